/**
 * The parts of a real `qemu-system-aarch64 -machine virt` line cmdqv accepts but does not
 * model (guest kernel, firmware, disks, networks, consoles, displays, other devices). They are
 * accepted so that real lines run, and each is listed once in the report ("not modelled: …"),
 * never silently dropped.
 */

/** An option cmdqv accepts without modelling; `arg`: it takes an argument. */
export interface UnmodelledOption {
  readonly name: string;
  readonly arg: boolean;
}

const WITH_ARG = [
  '-name', '-display', '-serial', '-monitor', '-bios', '-kernel', '-initrd', '-append', '-dtb', '-drive', '-cdrom',
  '-hda', '-pflash', '-blockdev', '-netdev', '-nic', '-net', '-D',
  '-smbios', '-audio', '-audiodev', '-boot', '-rtc', '-vga', '-msg', '-pidfile', '-overcommit', '-fw_cfg', '-icount',
  '-L', '-k', '-sandbox', '-run-with', '-action', '-parallel', '-virtfs', '-fsdev', '-incoming', '-loadvm', '-vnc', '-spice',
  '-usbdevice', '-device-help', '-semihosting-config', '-add-fd', '-readconfig',
] as const;
const WITHOUT_ARG = ['-S', '-no-reboot', '-no-shutdown', '-nodefaults', '-nographic', '-no-user-config', '-daemonize', '-usb', '-snapshot', '-semihosting', '-s'] as const;

/** Every accepted-but-not-modelled option. */
export const NOT_MODELLED_OPTIONS: readonly UnmodelledOption[] = [
  ...WITH_ARG.map((name) => ({ name, arg: true })),
  ...WITHOUT_ARG.map((name) => ({ name, arg: false })),
];

/** Options that ask for nothing a guest could see (names, housekeeping, "none"): not listed. */
const SILENT = new Set(['-name', '-nodefaults', '-no-user-config', '-msg', '-pidfile', '-daemonize']);

/**
 * The report entry for an accepted option ("-kernel Image"), or undefined when it asks for
 * nothing cmdqv lacks (`-display none`, `-name vm1`). Files are shown by their base name.
 */
export function notModelledEntry(opt: string, arg: string | undefined): string | undefined {
  if (SILENT.has(opt) || arg === 'none') return undefined;
  if (arg === undefined) return opt;
  const short = ['-kernel', '-initrd', '-bios', '-dtb', '-cdrom', '-hda', '-pflash', '-D', '-readconfig'].includes(opt)
    ? arg.slice(arg.lastIndexOf('/') + 1)
    : arg;
  return `${opt} ${short}`;
}

/**
 * Device models of qemu-system-aarch64 cmdqv accepts without modelling: `pci` ones take a
 * slot on their PCI bus (so the modelled devices get QEMU's numbers), the others sit on
 * non-PCI buses (SCSI, USB, virtio-serial) or on the system bus.
 */
export const NOT_MODELLED_DEVICES: ReadonlyMap<string, 'pci' | 'other'> = new Map<string, 'pci' | 'other'>([
  ...[
    'virtio-net-pci', 'virtio-blk-pci', 'virtio-scsi-pci', 'virtio-gpu-pci', 'virtio-rng-pci', 'virtio-balloon-pci', 'virtio-serial-pci',
    'virtio-keyboard-pci', 'virtio-mouse-pci', 'virtio-tablet-pci', 'virtio-iommu-pci', 'virtio-vsock-pci', 'vhost-vsock-pci',
    'virtio-9p-pci', 'vhost-user-fs-pci', 'virtio-mem-pci', 'virtio-pmem-pci', 'vhost-user-blk-pci', 'virtio-input-host-pci',
    'e1000', 'e1000e', 'igb', 'rtl8139', 'nvme', 'qemu-xhci', 'nec-usb-xhci', 'pci-bridge', 'pcie-pci-bridge', 'ich9-ahci',
    'megasas', 'lsi53c895a', 'pci-testdev', 'edu', 'ivshmem-plain', 'ivshmem-doorbell', 'bochs-display', 'vfio-pci-nohotplug',
    'x3130-upstream', 'xio3130-downstream', 'pci-serial', 'intel-hda', 'ich9-intel-hda',
  ].map((d) => [d, 'pci'] as const),
  ...[
    'scsi-cd', 'scsi-hd', 'scsi-block', 'scsi-generic', 'nvme-ns', 'usb-kbd', 'usb-mouse', 'usb-tablet', 'usb-storage', 'usb-host',
    'usb-ehci', 'virtconsole', 'virtserialport', 'virtio-net-device', 'virtio-blk-device', 'virtio-rng-device', 'hda-duplex',
    'hda-output', 'ramfb', 'tpm-tis-device', 'guest-loader', 'loader',
  ].map((d) => [d, 'other'] as const),
]);
