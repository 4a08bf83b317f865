/* i8042.c - the reset line of the PC keyboard controller. See i8042.h. */
#include <stddef.h>

#include "devices/i8042.h"

static void i8042_read(void *opaque, uint64_t off, uint8_t *data, unsigned len)
{
	(void)opaque;
	(void)off;
	/* Status (0x64): output buffer empty (bit 0), input buffer empty
	 * (bit 1); data (0x60): nothing. Both 0. */
	for (unsigned i = 0; i < len; i++)
		data[i] = 0;
}

static enum vmp_bus_action i8042_cmd_write(void *opaque, uint64_t off, const uint8_t *data,
					   unsigned len)
{
	(void)opaque;
	(void)off;
	return len == 1 && data[0] == VMP_I8042_RESET ? VMP_BUS_RESET : VMP_BUS_CONTINUE;
}

static const struct vmp_bus_ops data_ops = { .read = i8042_read, .write = NULL };
static const struct vmp_bus_ops cmd_ops = { .read = i8042_read, .write = i8042_cmd_write };

int vmp_i8042_attach(struct vmp_bus *bus, struct hatch_err *err)
{
	if (vmp_bus_register(bus, VMP_BUS_PIO, VMP_I8042_DATA, 1, &data_ops, NULL, err) < 0)
		return -1;
	return vmp_bus_register(bus, VMP_BUS_PIO, VMP_I8042_COMMAND, 1, &cmd_ops, NULL, err);
}
