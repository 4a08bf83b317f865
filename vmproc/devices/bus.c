/* bus.c - PIO/MMIO dispatch. See bus.h. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "devices/bus.h"
#include "hatchery/v1/common.pb-c.h"

struct bus_dev {
	enum vmp_bus_space space;
	uint64_t base, len;
	const struct vmp_bus_ops *ops;
	void *opaque;
};

struct vmp_bus {
	pthread_mutex_t mu;
	/* A handful of devices: a linear scan beats anything cleverer, and
	 * registration happens before any vCPU runs, so the table needs no
	 * lock of its own. */
	struct bus_dev dev[VMP_BUS_MAX_DEVICES];
	unsigned ndev;
	struct vmp_bus_stats stats;
};

int vmp_bus_create(struct vmp_bus **out, struct hatch_err *err)
{
	struct vmp_bus *b = calloc(1, sizeof(*b));
	if (!b)
		return hatch_err_set(err, HATCHERY__V1__ERROR_CODE__INTERNAL, ENOMEM, "device bus");
	pthread_mutex_init(&b->mu, NULL);
	*out = b;
	return 0;
}

void vmp_bus_destroy(struct vmp_bus *bus)
{
	if (!bus)
		return;
	pthread_mutex_destroy(&bus->mu);
	free(bus);
}

int vmp_bus_register(struct vmp_bus *bus, enum vmp_bus_space space, uint64_t base,
		     uint64_t len, const struct vmp_bus_ops *ops, void *opaque,
		     struct hatch_err *err)
{
	const char *sp = space == VMP_BUS_PIO ? "port" : "MMIO";
	if (len == 0 || base + len < base)
		return hatch_err_set(err, HATCHERY__V1__ERROR_CODE__INVALID_ARGUMENT, 0,
				     "bus: bad %s range %#llx+%#llx", sp,
				     (unsigned long long)base, (unsigned long long)len);
	if (bus->ndev == VMP_BUS_MAX_DEVICES)
		return hatch_err_set(err, HATCHERY__V1__ERROR_CODE__INVALID_ARGUMENT, 0,
				     "bus: more than %d devices", VMP_BUS_MAX_DEVICES);
	for (unsigned i = 0; i < bus->ndev; i++) {
		const struct bus_dev *d = &bus->dev[i];
		if (d->space == space && base < d->base + d->len && d->base < base + len)
			return hatch_err_set(err, HATCHERY__V1__ERROR_CODE__INVALID_ARGUMENT, 0,
					     "bus: %s range %#llx+%#llx overlaps %#llx+%#llx", sp,
					     (unsigned long long)base, (unsigned long long)len,
					     (unsigned long long)d->base,
					     (unsigned long long)d->len);
	}
	bus->dev[bus->ndev++] = (struct bus_dev){ space, base, len, ops, opaque };
	return 0;
}

enum vmp_bus_action vmp_bus_access(struct vmp_bus *bus, enum vmp_bus_space space,
				   uint64_t addr, uint8_t *data, unsigned len, bool is_write)
{
	enum vmp_bus_action act = VMP_BUS_CONTINUE;
	if (!is_write)
		memset(data, 0xff, len);
	pthread_mutex_lock(&bus->mu);
	const struct bus_dev *d = NULL;
	for (unsigned i = 0; i < bus->ndev; i++) {
		const struct bus_dev *c = &bus->dev[i];
		/* The whole access inside the range: one straddling two
		 * devices (or a device's end) is treated as unclaimed. */
		if (c->space == space && addr >= c->base && addr - c->base + len <= c->len) {
			d = c;
			break;
		}
	}
	if (!d) {
		if (is_write)
			bus->stats.unknown_writes++;
		else
			bus->stats.unknown_reads++;
		bus->stats.last_unknown_addr = addr;
		bus->stats.last_unknown_space = space;
	} else if (is_write) {
		if (d->ops->write)
			act = d->ops->write(d->opaque, addr - d->base, data, len);
	} else if (d->ops->read) {
		d->ops->read(d->opaque, addr - d->base, data, len);
	}
	pthread_mutex_unlock(&bus->mu);
	return act;
}

void vmp_bus_lock(struct vmp_bus *bus)
{
	pthread_mutex_lock(&bus->mu);
}

void vmp_bus_unlock(struct vmp_bus *bus)
{
	pthread_mutex_unlock(&bus->mu);
}

void vmp_bus_stats(struct vmp_bus *bus, struct vmp_bus_stats *out)
{
	pthread_mutex_lock(&bus->mu);
	*out = bus->stats;
	pthread_mutex_unlock(&bus->mu);
}
