/* bus.h - port I/O and MMIO dispatch for one VM's device models.
 *
 * Devices register a range (base, len) in one of two address spaces with
 * read/write callbacks and an opaque pointer; a vCPU thread hands every
 * KVM_EXIT_IO / KVM_EXIT_MMIO to vmp_bus_access. One mutex per bus
 * serialises every device-model access: the vCPU threads' exits and the
 * child's main thread (which takes it with vmp_bus_lock to process
 * virtqueues or read the console). Callbacks run with it held and must not
 * take it again.
 *
 * A stock kernel probes many ports that have nothing behind them (legacy
 * serial ports, port 0x80 delays, ...): an access that no device claims
 * reads all-ones, a write is dropped, and both are counted (vmp_bus_stats);
 * neither ends the VM.
 *
 * Lifecycle: vmp_bus_create, register every device, run the vCPUs,
 * stop them, then vmp_bus_destroy (which frees the bus, not the devices:
 * each device is its creator's).
 */
#ifndef HATCHERY_VMP_DEVICES_BUS_H
#define HATCHERY_VMP_DEVICES_BUS_H

#include <stdbool.h>
#include <stdint.h>

#include "hatchery/error.h"

enum vmp_bus_space { VMP_BUS_PIO, VMP_BUS_MMIO };

/* What a device asks of the vCPU after an access. */
enum vmp_bus_action {
	VMP_BUS_CONTINUE = 0,
	VMP_BUS_RESET,          /* the guest asked for a reset: end the VM */
};

/* `offset` is relative to the device's base; len is 1, 2, 4 or 8. A read
 * fills data[0, len) (the bus pre-fills it with 0xff). */
struct vmp_bus_ops {
	void (*read)(void *opaque, uint64_t offset, uint8_t *data, unsigned len);
	enum vmp_bus_action (*write)(void *opaque, uint64_t offset, const uint8_t *data,
				     unsigned len);
};

struct vmp_bus_stats {
	uint64_t unknown_reads, unknown_writes;
	uint64_t last_unknown_addr;     /* last unclaimed port or GPA */
	enum vmp_bus_space last_unknown_space;
};

struct vmp_bus;

#define VMP_BUS_MAX_DEVICES 32

/* A new, empty bus; -1 with err on allocation failure. */
int vmp_bus_create(struct vmp_bus **out, struct hatch_err *err);
/* Frees the bus; NULL is fine. No vCPU may be running. */
void vmp_bus_destroy(struct vmp_bus *bus);

/* Claim [base, base + len) of `space`. Fails (INVALID_ARGUMENT) if it
 * overlaps a registered range, is empty, or the bus is full. ops is
 * borrowed and must outlive the bus; opaque is passed to its callbacks. */
int vmp_bus_register(struct vmp_bus *bus, enum vmp_bus_space space, uint64_t base,
		     uint64_t len, const struct vmp_bus_ops *ops, void *opaque,
		     struct hatch_err *err);

/* One access from a vCPU exit, under the bus mutex. */
enum vmp_bus_action vmp_bus_access(struct vmp_bus *bus, enum vmp_bus_space space,
				   uint64_t addr, uint8_t *data, unsigned len, bool is_write);

/* For the child's main thread, around its own device work. */
void vmp_bus_lock(struct vmp_bus *bus);
void vmp_bus_unlock(struct vmp_bus *bus);

void vmp_bus_stats(struct vmp_bus *bus, struct vmp_bus_stats *out);

#endif
