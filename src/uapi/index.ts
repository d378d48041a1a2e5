/** The iommufd uAPI seam: layouts, enums, ioctl numbers, errno and copy rules. */
export * from './errno.js';
export * from './layout.js';
export * from './iommufd.js';
export * from './extensible.js';
export * from './describe.js';
export * from './vfio.js';
