/* i8042.h - the PC keyboard controller, only as reboot=k's reset line.
 *
 * The kernel reboots with `reboot=k` (and panics with panic=1 into the same
 * path) by waiting for the controller's input buffer to drain (status port
 * 0x64, bit 1) and writing command 0xFE, "pulse the reset line", to 0x64.
 * Here status reads always say "no data, input buffer empty", and 0xFE
 * makes the bus access return VMP_BUS_RESET, which ends the VM. The data
 * port 0x60 reads 0 and ignores writes. No keyboard, no AUX port, no
 * interrupts: the FADT tells the kernel there is no 8042 to probe.
 *
 * Lifecycle: stateless; registered on the bus for the bus's lifetime.
 */
#ifndef HATCHERY_VMP_DEVICES_I8042_H
#define HATCHERY_VMP_DEVICES_I8042_H

#include "devices/bus.h"
#include "hatchery/error.h"

#define VMP_I8042_DATA    0x60
#define VMP_I8042_COMMAND 0x64
#define VMP_I8042_RESET   0xfe

int vmp_i8042_attach(struct vmp_bus *bus, struct hatch_err *err);

#endif
