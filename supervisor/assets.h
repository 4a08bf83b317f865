/* assets.h - what hatcheryd loads per pool from files named in the
 * configuration (assets.c): the guest ELF (kind = booted), the snapshot
 * fd (kind = restore), the kernel and initrd (kind = linux), each checked
 * as a child would check it, and vcpus against this host's KVM.
 *
 * Ownership: what a loader fills in belongs to `cfg` and is freed with
 * sup_config_free() or sup_config_release_assets(). A loader that fails
 * may leave earlier pools' assets loaded (free them the same way);
 * sup_load_assets() frees them itself.
 */
#ifndef HATCHERY_SUP_ASSETS_H
#define HATCHERY_SUP_ASSETS_H

#include "config.h"
#include "hatchery/error.h"
#include "vmproc.h"

int sup_load_guests(struct sup_config *cfg, struct hatch_err *err);
int sup_load_snapshots(struct sup_config *cfg, const struct vmp_kvm_host *kvm,
		       struct hatch_err *err);
int sup_load_linux(struct sup_config *cfg, const struct vmp_kvm_host *kvm,
		   struct hatch_err *err);
int sup_check_vcpus(const struct sup_config *cfg, const struct vmp_kvm_host *kvm,
		    struct hatch_err *err);

/* All of the above, in that order; on failure nothing stays loaded. The
 * messages are those start-up prints. */
int sup_load_assets(struct sup_config *cfg, const struct vmp_kvm_host *kvm,
		    struct hatch_err *err);

#endif
