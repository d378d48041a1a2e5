// The qtest requests as typed calls, shared by the test clients whatever their transport (unix
// sockets as libqtest connects, or stdio): a transport only supplies `cmd`, one request line in,
// its reply line out (docs/reference/qtest-qmp.md §1).

const SIZE_SUFFIX = { 1: 'b', 2: 'w', 4: 'l', 8: 'q' } as const;

const hex = (v: number | bigint) => `0x${v.toString(16)}`;

/** The value of an `OK [VALUE]` reply (throws on FAIL/ERR). */
export function reply(line: string): string {
  if (line !== 'OK' && !line.startsWith('OK ')) throw new Error(`qtest: ${line}`);
  return line.slice(3);
}

/** Typed qtest requests over a transport's `cmd`. Addresses may be numbers or bigints. */
export abstract class QtestOps {
  /** Send one request line; resolves with its reply line (`OK ...`, `FAIL ...`, `ERR ...`). */
  abstract cmd(line: string): Promise<string>;

  /** A CPU load of 1, 2, 4 or 8 bytes (`readb/w/l/q`). */
  async readN(size: 1 | 2 | 4 | 8, addr: number | bigint): Promise<bigint> {
    return BigInt(reply(await this.cmd(`read${SIZE_SUFFIX[size]} ${hex(addr)}`)));
  }

  /** A CPU store of 1, 2, 4 or 8 bytes (`writeb/w/l/q`), the value cut to the width. */
  async writeN(size: 1 | 2 | 4 | 8, addr: number | bigint, v: bigint | number): Promise<void> {
    reply(await this.cmd(`write${SIZE_SUFFIX[size]} ${hex(addr)} ${hex(BigInt.asUintN(size * 8, BigInt(v)))}`));
  }

  async readl(addr: number | bigint): Promise<number> {
    return Number(await this.readN(4, addr));
  }

  async writel(addr: number | bigint, v: number): Promise<void> {
    await this.writeN(4, addr, v);
  }

  async writeq(addr: number | bigint, v: bigint): Promise<void> {
    await this.writeN(8, addr, v);
  }

  /** `len` bytes from `addr` (`b64read`; an MMIO region is accessed as the machine splits it). */
  async read(addr: number | bigint, len: number): Promise<Uint8Array> {
    return Uint8Array.from(Buffer.from(reply(await this.cmd(`b64read ${hex(addr)} ${hex(len)}`)), 'base64'));
  }

  /** Store bytes in memory order (`b64write`). */
  async write(addr: number | bigint, data: Uint8Array): Promise<void> {
    reply(await this.cmd(`b64write ${hex(addr)} ${hex(data.length)} ${Buffer.from(data).toString('base64')}`));
  }

  /** `memset ADDR SIZE VALUE`. */
  async memset(addr: number | bigint, len: number, value: number): Promise<void> {
    reply(await this.cmd(`memset ${hex(addr)} ${hex(len)} ${hex(value)}`));
  }

  /** Poll a 32-bit register until `cond` holds (at most `tries` reads). */
  async poll(addr: number | bigint, cond: (v: number) => boolean, tries = 100): Promise<number> {
    let v = 0;
    for (let i = 0; i < tries; i++) {
      v = await this.readl(addr);
      if (cond(v)) return v;
    }
    throw new Error(`${hex(addr)} stayed ${hex(v)}`);
  }
}
