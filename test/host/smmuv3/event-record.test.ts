// Event record encoding: the address words are the exact halves of addresses at every width.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { EF_ADDR, EF_ADDR2, EF_FETCH_ADDR, EF_FETCH_ADDR2, FaultRecord, encodeEvent } from '../../../src/arch/smmuv3/event-record.js';

const TWO32 = 2 ** 32;

test('dword2 and dword3 hold the exact low and high words of addresses below 2^31, above 2^32 and near 2^52', () => {
  const e = new Uint32Array(8);
  for (const a of [0, 0x7fff_f000, 0x8000_0000, 0xffff_ffff, TWO32, 0x12_3456_789a, 2 ** 48 - 1, 2 ** 52 - 8, 2 ** 53 - 1]) {
    const f = new FaultRecord().reset(0x10, 7, a);
    f.addr2 = a;
    encodeEvent(f, EF_ADDR | EF_ADDR2, e);
    const lo = a - Math.floor(a / TWO32) * TWO32;
    assert.deepEqual([e[4], e[5], e[6], e[7]], [lo, Math.floor(a / TWO32), lo, Math.floor(a / TWO32)], `0x${a.toString(16)}`);
    f.fetchAddr = a;
    f.addr = 0;
    encodeEvent(f, EF_FETCH_ADDR | EF_FETCH_ADDR2, e);
    assert.deepEqual([e[4], e[5], e[6], e[7]], [lo, Math.floor(a / TWO32), lo, Math.floor(a / TWO32)], `fetch 0x${a.toString(16)}`);
  }
});
