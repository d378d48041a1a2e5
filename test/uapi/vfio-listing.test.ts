// `cmdqv uapi` lists the VFIO device-file ioctls, structs and constants next to iommufd's
// (docs/reference/iommufd-uapi.md §16.1).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { formatUapiTable, runUapiCommand } from '../../src/cli/uapi-command.js';

test('cmdqv uapi --json and the text table include the VFIO ioctls, struct layouts and region indexes', () => {
  const d = JSON.parse(runUapiCommand(true)) as { structs: Record<string, { size: number; fields: Record<string, { offset: number }> }>; ioctls: Record<string, number>; enums: Record<string, Record<string, number>> };
  assert.equal(d.ioctls.VFIO_DEVICE_GET_INFO, 0x3b6b);
  assert.equal(d.ioctls.VFIO_DEVICE_GET_REGION_INFO, 0x3b6c);
  assert.equal(d.ioctls.VFIO_DEVICE_RESET, 0x3b6f);
  assert.equal(d.ioctls.IOMMU_DESTROY, 0x3b80, 'iommufd entries stay');
  assert.equal(d.structs.vfio_region_info!.size, 32);
  assert.equal(d.structs.vfio_region_info!.fields.offset!.offset, 24);
  assert.equal(d.structs.vfio_device_info!.fields.num_irqs!.offset, 12);
  assert.equal(d.enums.vfio_pci_region_index!.VFIO_PCI_CONFIG_REGION_INDEX, 7);
  const text = formatUapiTable();
  assert.match(text, /struct vfio_region_info {2}\(32 bytes\)/);
  assert.match(text, /0x3b6c {2}15212 {2}VFIO_DEVICE_GET_REGION_INFO/);
});
