/* assets.c - what hatcheryd loads per pool before any child of it is
 * forked: each booted pool's guest ELF, each restore pool's snapshot (an
 * open fd, checked), each linux pool's kernel and initrd, and the vCPU
 * count checked against KVM. At start-up (main.c) and for a reload's new
 * configuration (reload.c), so a file that does not fit is refused with
 * one message before it can replace anything. Children inherit the bytes
 * and the fd through the fork. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "assets.h"
#include "disk.h"
#include "hatchery/cleanup.h"
#include "hatchery/v1/common.pb-c.h"
#include "linux/bzimage.h"
#include "linux/machine.h"
#include "snapshot.h"

/* Read each booted pool's guest ELF once and validate it as a child
 * would, so a bad guest fails start-up with one message instead of every
 * spawn. Children inherit the bytes through the fork. */
int sup_load_guests(struct sup_config *cfg, struct hatch_err *err)
{
	for (size_t i = 0; i < cfg->n_pools; i++) {
		struct sup_pool_config *p = &cfg->pools[i];
		if (p->kind != SUP_POOL_BOOTED)
			continue;
		_cleanup_close_ int fd = open(p->guest, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			return hatch_err_set(err, HATCHERY__V1__ERROR_CODE__INVALID_ARGUMENT, errno,
					     "[pool \"%s\"] guest %s", p->name, p->guest);
		struct stat st;
		if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > VMP_GUEST_MAX_ELF)
			return hatch_err_set(err, HATCHERY__V1__ERROR_CODE__INVALID_ARGUMENT, 0,
					     "[pool \"%s\"] guest %s: not a regular file of at most %u bytes",
					     p->name, p->guest, VMP_GUEST_MAX_ELF);
		p->guest_elf = malloc((size_t)st.st_size + 1);
		if (!p->guest_elf)
			return hatch_err_set(err, HATCHERY__V1__ERROR_CODE__INTERNAL, ENOMEM, "guest");
		ssize_t n = read(fd, p->guest_elf, (size_t)st.st_size);
		if (n != st.st_size)
			return hatch_err_set(err, HATCHERY__V1__ERROR_CODE__INVALID_ARGUMENT,
					     n < 0 ? errno : 0, "[pool \"%s\"] read %s", p->name, p->guest);
		p->guest_elf_len = (size_t)n;
		struct vmp_guest_image img;
		if (vmp_guest_elf_parse(p->guest_elf, p->guest_elf_len, &img, err) < 0)
			return hatch_err_wrap(err, "[pool \"%s\"] %s", p->name, p->guest);
	}
	return 0;
}

/* Read a whole regular file of at most `max` bytes into *out (malloc'd,
 * the caller's). */
static int read_whole(const char *pool, const char *what, const char *path,
		      size_t max, unsigned char **out, size_t *len,
		      struct hatch_err *err)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return hatch_err_set(err, HATCHERY__V1__ERROR_CODE__INVALID_ARGUMENT, errno,
				     "[pool \"%s\"] %s %s", pool, what, path);
	struct stat st;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size <= 0 ||
	    (uint64_t)st.st_size > max)
		return hatch_err_set(err, HATCHERY__V1__ERROR_CODE__INVALID_ARGUMENT, 0,
				     "[pool \"%s\"] %s %s: not a regular file of 1 to %zu bytes",
				     pool, what, path, max);
	unsigned char *buf = malloc((size_t)st.st_size);
	if (!buf)
		return hatch_err_set(err, HATCHERY__V1__ERROR_CODE__INTERNAL, ENOMEM, "%s", what);
	size_t got = 0;
	while (got < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
		if (n <= 0) {
			free(buf);
			return hatch_err_set(err, HATCHERY__V1__ERROR_CODE__INVALID_ARGUMENT,
					     n < 0 ? errno : 0, "[pool \"%s\"] read %s %s%s",
					     pool, what, path, n == 0 ? ": shorter than its size" : "");
		}
		got += (size_t)n;
	}
	*out = buf;
	*len = got;
	return 0;
}

#define LINUX_KERNEL_MAX (64u << 20)
#define LINUX_INITRD_MAX (512u << 20)

/* A disk is opened per child (its backend's image fd); check once now
 * that it can be, and that it is a disk: a regular file or block device
 * of whole 512-byte sectors. For overlay, that overlay_dir takes an
 * unlinked layer file (O_TMPFILE). */
static int check_disk(const struct sup_pool_config *p, struct hatch_err *err)
{
	bool rw = p->disk_mode == SUP_DISK_RW;
	_cleanup_close_ int fd = open(p->disk, (rw ? O_RDWR : O_RDONLY) | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0)
		return hatch_err_set(err, HATCHERY__V1__ERROR_CODE__INVALID_ARGUMENT, errno,
				     "[pool \"%s\"] disk %s%s", p->name, p->disk,
				     rw ? " (disk_mode = rw opens it read-write)" : "");
	if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode))
		return hatch_err_set(err, HATCHERY__V1__ERROR_CODE__INVALID_ARGUMENT, 0,
				     "[pool \"%s\"] disk %s: not a regular file or block device",
				     p->name, p->disk);
	if (S_ISREG(st.st_mode) && (st.st_size == 0 || st.st_size % 512))
		return hatch_err_set(err, HATCHERY__V1__ERROR_CODE__INVALID_ARGUMENT, 0,
				     "[pool \"%s\"] disk %s: %lld bytes, not a positive number of "
				     "512-byte sectors (a raw image)", p->name, p->disk,
				     (long long)st.st_size);
	if (p->disk_mode == SUP_DISK_OVERLAY) {
		_cleanup_close_ int layer = sup_disk_layer_open(p->overlay_dir);
		if (layer < 0)
			return hatch_err_set(err, HATCHERY__V1__ERROR_CODE__INVALID_ARGUMENT, errno,
					     "[pool \"%s\"] overlay_dir %s: cannot make an unlinked "
					     "layer file there", p->name, p->overlay_dir);
	}
	return 0;
}

/* Can this host's KVM run a Linux guest? The probe runs a guest (up to
 * ~0.2 s where KVM emulates CPL 0): once it said yes, a reload does not ask
 * again. kvm NULL (hatcheryd --check): not asked. */
static int probe_linux_once(const struct vmp_kvm_host *kvm, const struct sup_pool_config *p,
			    const char *what, struct hatch_err *err)
{
	static bool probed;
	if (!kvm || probed)
		return 0;
	if (vmp_kvm_probe_kernel_mode(kvm, NULL, err) < 0)
		return hatch_err_wrap(err, "[pool \"%s\"] %s: this host's KVM cannot run a "
				      "Linux kernel (run hatchery in a VM with hardware "
				      "virtualisation, or scripts/vm)", p->name, what);
	probed = true;
	return 0;
}

/* Each linux pool's kernel and initramfs, read once (children inherit the
 * bytes through the fork and copy them into guest RAM) and the kernel's
 * boot header checked, so a wrong file fails start-up with one message.
 * kvm NULL (--check-config): the files only, not whether KVM can boot. */
int sup_load_linux(struct sup_config *cfg, const struct vmp_kvm_host *kvm,
		   struct hatch_err *err)
{
	for (size_t i = 0; i < cfg->n_pools; i++) {
		struct sup_pool_config *p = &cfg->pools[i];
		if (p->kind != SUP_POOL_LINUX)
			continue;
		p->linux_machine = true;
		if (probe_linux_once(kvm, p, "kind = linux", err) < 0)
			return -1;
		if (read_whole(p->name, "kernel", p->kernel, LINUX_KERNEL_MAX,
			       &p->kernel_img, &p->kernel_len, err) < 0 ||
		    read_whole(p->name, "initrd", p->initrd, LINUX_INITRD_MAX,
			       &p->initrd_img, &p->initrd_len, err) < 0)
			return -1;
		struct vmp_bzimage bz;
		if (vmp_bzimage_parse(p->kernel_img, p->kernel_len, &bz, err) < 0)
			return hatch_err_wrap(err, "[pool \"%s\"] kernel %s", p->name, p->kernel);
		if (p->disk[0] && check_disk(p, err) < 0)
			return -1;
	}
	return 0;
}

/* Open each restore pool's snapshot once and check all of it (header,
 * sections, memory map) against the pool's memory_mib and vcpus and this
 * host's CPU, as a child would before it restores, so a snapshot that does
 * not fit fails start-up with one message instead of every spawn. Children
 * inherit the open fd; they never open the path (a jailed child could
 * not). The header's CRC is kept: a child compares it, so a file rewritten
 * in place after start-up is refused clearly (docs/snapshot.md). */
int sup_load_snapshots(struct sup_config *cfg, const struct vmp_kvm_host *kvm,
		       struct hatch_err *err)
{
	for (size_t i = 0; i < cfg->n_pools; i++) {
		struct sup_pool_config *p = &cfg->pools[i];
		if (p->kind != SUP_POOL_RESTORE)
			continue;
		_cleanup_close_ int fd = open(p->snapshot, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			return hatch_err_set(err, HATCHERY__V1__ERROR_CODE__INVALID_ARGUMENT, errno,
					     "[pool \"%s\"] snapshot %s", p->name, p->snapshot);
		struct stat st;
		if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
			return hatch_err_set(err, HATCHERY__V1__ERROR_CODE__INVALID_ARGUMENT, 0,
					     "[pool \"%s\"] snapshot %s: not a regular file "
					     "holding a snapshot", p->name, p->snapshot);
		struct snap_expect want = {
			.mem_size = (uint64_t)p->memory_mib << 20,
			.nvcpus = p->vcpus,
		};
		vmp_snap_host_cpu(kvm, &want.cpu);
		struct snap_image img;
		if (snap_parse_fd(fd, &want, &img, err) < 0)
			return hatch_err_wrap(err, "[pool \"%s\"] snapshot %s (memory_mib = %u, "
					      "vcpus = %u)", p->name, p->snapshot, p->memory_mib,
					      p->vcpus);
		uint32_t crc = img.header_crc;
		/* A Linux guest's snapshot: its device set must be the one
		 * this pool's children build, and the host must run Linux. */
		p->linux_machine = img.st.devices != NULL;
		int r = 0;
		if (p->linux_machine) {
			r = vmp_linux_devices_check(img.st.devices, err);
			if (r < 0)
				hatch_err_wrap(err, "[pool \"%s\"] snapshot %s", p->name,
					       p->snapshot);
			else
				r = probe_linux_once(kvm, p, "a snapshot of a Linux guest", err);
		}
		snap_image_free(&img);
		if (r < 0)
			return -1;
		p->snap_header_crc = crc;
		p->snap_dev = (uint64_t)st.st_dev;
		p->snap_ino = (uint64_t)st.st_ino;
		p->snap_size = (uint64_t)st.st_size;
		p->snap_mtime = (int64_t)st.st_mtime;
		p->snap_fd = steal_fd(&fd);
		fprintf(stderr, "hatcheryd: pool \"%s\": snapshot %s (dev %llu, inode %llu, "
				"%lld bytes, mtime %lld, header crc %08x), %s, %s\n",
			p->name, p->snapshot, (unsigned long long)st.st_dev,
			(unsigned long long)st.st_ino, (long long)st.st_size,
			(long long)st.st_mtime, crc,
			p->linux_machine ? "a Linux guest" : "a kernel-less guest",
			p->prerestore ? "restored before ready" : "restored on lease");
	}
	return 0;
}

/* What the config asks of this host's KVM, checked now rather than as a
 * stream of failing children. */
int sup_check_vcpus(const struct sup_config *cfg, const struct vmp_kvm_host *kvm,
		    struct hatch_err *err)
{
	for (size_t i = 0; i < cfg->n_pools; i++) {
		const struct sup_pool_config *p = &cfg->pools[i];
		if ((int)p->vcpus > kvm->max_vcpus)
			return hatch_err_set(err, HATCHERY__V1__ERROR_CODE__INVALID_ARGUMENT, 0,
					     "pool \"%s\": vcpus = %u, but this host's KVM "
					     "allows at most %d", p->name, p->vcpus,
					     kvm->max_vcpus);
	}
	return 0;
}

int sup_load_assets(struct sup_config *cfg, const struct vmp_kvm_host *kvm,
		    struct hatch_err *err)
{
	if (sup_load_guests(cfg, err) < 0 || sup_load_snapshots(cfg, kvm, err) < 0 ||
	    sup_load_linux(cfg, kvm, err) < 0 || sup_check_vcpus(cfg, kvm, err) < 0) {
		sup_config_release_assets(cfg);
		return -1;
	}
	return 0;
}
