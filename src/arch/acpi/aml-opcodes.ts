/** AML opcodes and resource tags (ACPI spec): shared by the VMM's encoder and the guest's parser. */

/** AML opcodes and prefixes used by this encoder (ACPI spec, AML grammar). */
export const AmlOp = {
  Zero: 0x00,
  One: 0x01,
  Name: 0x08,
  BytePrefix: 0x0a,
  WordPrefix: 0x0b,
  DWordPrefix: 0x0c,
  StringPrefix: 0x0d,
  QWordPrefix: 0x0e,
  Scope: 0x10,
  Buffer: 0x11,
  Package: 0x12,
  VarPackage: 0x13,
  Method: 0x14,
  DualNamePrefix: 0x2e,
  MultiNamePrefix: 0x2f,
  ExtOpPrefix: 0x5b,
  /** Second byte of DeviceOp (`5B 82`). */
  Device: 0x82,
  RootChar: 0x5c,
  ParentPrefix: 0x5e,
  Return: 0xa4,
  Ones: 0xff,
} as const;

/** Resource descriptor tags (ACPI spec §6.4; large items carry a u16 length after the tag). */
export const ResTag = {
  /** Small item: End Tag, `79 <checksum>`. */
  EndTag: 0x79,
  Memory32Fixed: 0x86,
  DWordAddress: 0x87,
  WordAddress: 0x88,
  ExtendedInterrupt: 0x89,
  QWordAddress: 0x8a,
} as const;
