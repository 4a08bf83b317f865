/* vmsnap.h - Save and Restore of one VM: gather KVM state into the
 * snapshot format (snapshot/), and apply what snap_parse() returned.
 *
 * vmproc/ calls snapshot/, never the other way round. The state list and
 * the order it is set in are in docs/snapshot.md ("Save and Restore"). The
 * host CPU a snapshot must match is vmp_snap_host_cpu (vmproc.h, in
 * host/kvm.c, since the supervisor checks it too).
 *
 * Ownership: the fds are borrowed (the caller closes them); vm, host and
 * guest are the caller's.
 */
#ifndef HATCHERY_VMP_VMSNAP_H
#define HATCHERY_VMP_VMSNAP_H

#include <stdbool.h>
#include <stdint.h>

#include "hatchery/error.h"
#include "kvm/kvm.h"
#include "runtime/runtime.h"
#include "snapshot.h"

struct vmp_snap_save_stats {
	uint64_t vcpu_ns, vm_ns, write_ns; /* per phase */
	uint64_t bytes;                    /* the file's size */
};

struct vmp_snap_restore_stats {
	uint64_t map_ns, vcpu_ns, vm_ns;
};

/* Write vm's state, guest memory and exactly one of g's runtime state (a
 * kernel-less guest) and dev (a Linux guest's devices, gathered by
 * vmp_linux_devices_save) to fd (a regular file; truncated to the
 * snapshot's size). The vCPUs must be stopped (kernel-less: between
 * requests; Linux: vmp_linux_pause). The VM stays usable. */
int vmp_snap_save(struct vmp_vm *vm, const struct vmp_kvm_host *h,
		  const struct vmp_guest *g, const struct snap_devices *dev, int fd,
		  struct vmp_snap_save_stats *st, struct hatch_err *err);

/* The two halves of a restore, for a Linux machine that restores its
 * devices between them and around its vCPU threads:
 * vmp_snap_open parses fd against vm (memory size, vCPUs, host CPU) and
 * touches nothing (snap_image_free the image after);
 * vmp_snap_apply maps the image's memory over guest RAM and sets the VM's
 * and the vCPUs' KVM state (the vCPUs must not be running). *touched is
 * set once the VM was changed. The clock goes on from its saved value,
 * never from the saved wall-clock time (docs/snapshot.md, "Clock"). */
int vmp_snap_open(struct vmp_vm *vm, const struct vmp_kvm_host *h, int fd,
		  struct snap_image *img, struct hatch_err *err);
int vmp_snap_apply(struct vmp_vm *vm, int fd, const struct snap_image *img,
		   struct vmp_snap_restore_stats *st, bool *touched, struct hatch_err *err);

/* Replace all of guest RAM with fresh anonymous memory at the same address
 * (the memslot stays; KVM drops its mappings of the old pages). */
int vmp_snap_drop_ram(struct vmp_vm *vm, struct hatch_err *err);

/* Restore the snapshot of a kernel-less guest in fd into vm, which must be
 * fresh (its RAM never written, no guest). *touched is set once the VM has
 * been changed: after a failure with *touched set, the VM is in no known
 * state and must not be used again. On success *g is a ready guest. */
int vmp_snap_restore(struct vmp_vm *vm, const struct vmp_kvm_host *h, int fd,
		     struct vmp_guest *g, struct vmp_snap_restore_stats *st,
		     bool *touched, struct hatch_err *err);

/* Reset a VM that has run (reuse = snapshot): replace all of guest RAM
 * with fresh anonymous memory at the same address (the memslot stays; the
 * pages the last guest wrote are dropped, also those the snapshot holds as
 * zero, which no extent maps over), then vmp_snap_restore(). Same contract
 * for *touched, which is set as soon as RAM is dropped. */
int vmp_snap_reset(struct vmp_vm *vm, const struct vmp_kvm_host *h, int fd,
		   struct vmp_guest *g, struct vmp_snap_restore_stats *st,
		   bool *touched, struct hatch_err *err);

#endif
