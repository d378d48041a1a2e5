export { iortRouteRid, parseDsdtCmdqvDevices, parseIort, type ParsedIort } from '../vmm/acpi/parse.js';
