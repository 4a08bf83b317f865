/* config.h - hatcheryd's INI configuration (libinih), parsed and validated.
 *
 * Pure code: no sockets, no KVM, unit-tested on strings. Every error names
 * the file, the line, the section and the key, and says what was expected:
 *   hatchery.conf:12: [pool "default"] min_idle: expected an integer in
 *   0..4096, got "four"
 * Unknown sections and keys are errors (a typo must not silently fall back
 * to a default).
 *
 * Ownership: sup_config_load/parse fill a caller-provided struct; free what
 * they allocated with sup_config_free(). On failure nothing needs freeing.
 */
#ifndef HATCHERY_SUP_CONFIG_H
#define HATCHERY_SUP_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "hatchery/error.h"
#include "host/seccomp.h" /* enum vmp_seccomp_mode */

#define SUP_POOL_NAME_MAX 63
#define SUP_MAX_POOLS 64
#define SUP_MAX_ALLOW_UIDS 32
#define SUP_MAX_CHILDREN_PER_POOL 4096

enum sup_pool_kind {
	SUP_POOL_EMPTY = 0, /* a VM with memory, irqchip, PIT and vCPUs; no guest
	                     * (a client may Load one) */
	SUP_POOL_BOOTED,    /* the same, with `guest` booted to its ready point */
	SUP_POOL_RESTORE,   /* an empty VM that restores `snapshot` (copy-on-write
	                     * from the one file) before it is ready, or on lease */
	SUP_POOL_LINUX,     /* a Linux kernel booted with hatchery's initramfs to
	                     * its agent's ready (docs/guest-linux.md) */
};

#define SUP_LINUX_MIN_MEMORY_MIB 96 /* Debian's kernel + the initramfs in RAM */
#define SUP_LINUX_DEFAULT_MEMORY_MIB 256

#define SUP_GUEST_MIN_MEMORY_MIB 32 /* HATCH_MIN_MEMORY of the guest ABI */

/* What a restore pool's child does when its lease ends. */
/* disk_mode: how a linux pool's VMs see `disk` (docs/vhost.md). */
enum sup_disk_mode {
	SUP_DISK_OVERLAY = 0,    /* each VM writes a private sparse layer, discarded at exit */
	SUP_DISK_RO,             /* read-only: VIRTIO_BLK_F_RO */
	SUP_DISK_RW,             /* the image itself: max = 1 only */
};

enum sup_reuse_mode {
	SUP_REUSE_NEVER = 0,     /* exit; a fresh child replaces it (single use) */
	SUP_REUSE_SNAPSHOT,      /* restore the pool's snapshot over itself and
	                          * become idle again (docs/security.md) */
};

enum sup_cgroup_mode {
	SUP_CGROUP_REQUIRED = 0, /* no usable cgroup v2: refuse to start */
	SUP_CGROUP_OPTIONAL,     /* no usable cgroup v2: say so, run unlimited */
};

struct sup_pool_config {
	char name[SUP_POOL_NAME_MAX + 1];
	enum sup_pool_kind kind;        /* kind = empty|booted|restore          */
	char guest[256];                /* guest = PATH: absolute; kind = booted only */
	/* The guest ELF's bytes: read and validated once by hatcheryd at
	 * start-up (not by the parser), inherited by every child through the
	 * fork: a jailed child opens nothing by path. Freed by
	 * sup_config_free(). */
	unsigned char *guest_elf;
	size_t guest_elf_len;
	char snapshot[256];             /* snapshot = PATH: absolute; kind = restore only */
	/* kind = linux: the kernel (a bzImage) and the initramfs with the
	 * agent, default the ones the build made (HATCH_DEFAULT_KERNEL/INITRD);
	 * extra words for the kernel's command line; how long a boot to the
	 * agent's ready may take. */
	char kernel[256];
	char initrd[256];
	char cmdline[512];
	/* kind = linux: a raw disk image the guest sees as /dev/vda, served
	 * by a jailed vhost-user backend per VM (docs/vhost.md); "" none. */
	char disk[256];
	enum sup_disk_mode disk_mode;   /* disk_mode = overlay|ro|rw, default overlay */
	char overlay_dir[256];          /* overlay layers: unlinked files here, default /var/tmp */
	/* kind = linux, instead of disk: an external vhost-user-blk backend's
	 * listening socket (qemu-storage-daemon's vhost-user-blk export),
	 * connected to once per VM; no backend or jail of ours; "" none. */
	char disk_socket[108];
	unsigned boot_timeout_ms;       /* 100..600000, default 60000 */
	/* Their bytes, read once at start-up like guest_elf; inherited by
	 * every child through the fork. Freed by sup_config_free(). */
	unsigned char *kernel_img, *initrd_img;
	size_t kernel_len, initrd_len;
	bool prerestore;                /* prerestore = true|false, default false:
	                                 * restore before ready (true) or on lease */
	enum sup_reuse_mode reuse;      /* reuse = never|snapshot, default never;
	                                 * snapshot only for kind = restore */
	/* The snapshot, opened (O_RDONLY|O_CLOEXEC) and validated against
	 * memory_mib, vcpus and the host CPU once by hatcheryd at start-up
	 * (not by the parser); every child inherits the fd and maps it
	 * MAP_PRIVATE. -1 until then. Closed by sup_config_free(). */
	int snap_fd;
	uint32_t snap_header_crc;       /* the header's CRC32C at start-up */
	/* The children run a Linux machine (vCPU threads, devices, the
	 * agent): kind = linux, or kind = restore with a snapshot of a Linux
	 * guest (set by sup_load_snapshots, which reads it off the file). */
	bool linux_machine;
	/* Its identity at start-up (logged; a child checks the size). */
	uint64_t snap_dev, snap_ino, snap_size;
	int64_t snap_mtime;
	unsigned min_idle;              /* 0..4096, default 4, <= max           */
	unsigned max;                   /* 1..4096, default 64                  */
	unsigned max_spawning;          /* 1..256, default 4: concurrent forks  */
	unsigned refill_delay_us;       /* 0..1000000, default 2000: after a lease,
	                                 * while idle children remain, wait this
	                                 * long before forking replacements */
	unsigned memory_mib;            /* 1..65536, default 64 (kind = linux: 256,
	                                 * at least 96) */
	unsigned vcpus;                 /* 1..64, default 1                     */
	unsigned health_interval_ms;    /* 10..3600000, default 1000            */
	unsigned health_timeout_ms;     /* 1..60000, default 200                */
	unsigned max_idle_age_ms;       /* 0 (off, default) or 100..86400000: an
	                                 * idle child ready this long is retired
	                                 * once its replacement is ready */
	uid_t allow_uids[SUP_MAX_ALLOW_UIDS]; /* allow_uids = 0, 1000 (default: 0) */
	size_t n_allow_uids;
	enum vmp_seccomp_mode seccomp;  /* seccomp = kill|log, default kill    */
	/* Per-child cgroup v2 limits. */
	unsigned memory_max_mib;        /* 1..1048576, default memory_mib + 64 */
	unsigned pids_max;              /* 1..4096, default 16                  */
	unsigned cpu_max_pct;           /* 0..6400 (% of one CPU), 0 = no limit, default 100 */
};

struct sup_config {
	char socket_path[108];          /* [supervisor] socket (sun_path size)  */
	unsigned socket_mode;           /* [supervisor] socket_mode, octal, default 0666 */
	unsigned jail_uid_base;         /* [supervisor] jail_uid_base, default 200000:
					   child slot N runs as uid/gid base + N */
	enum sup_cgroup_mode cgroup;    /* [supervisor] cgroup = required|optional */
	char cgroup_root[256];          /* [supervisor] cgroup_root; "" = the cgroup2
					   mount from /proc/self/mountinfo */
	struct sup_pool_config *pools;  /* [pool "NAME"] sections, in file order */
	size_t n_pools;
};

/* Parse and validate `path`. Returns 0, or -1 with err filled (code
 * INVALID_ARGUMENT). */
int sup_config_load(const char *path, struct sup_config *out,
		    struct hatch_err *err);

/* Same, from a string; `name` is used in messages in place of a file name. */
int sup_config_parse_string(const char *text, const char *name,
			    struct sup_config *out, struct hatch_err *err);

void sup_config_free(struct sup_config *c);

/* Free what hatcheryd loaded per pool (guest ELF, kernel and initrd bytes;
 * close the snapshot fd) and leave the rest of `c` valid: a reload does
 * this to the configuration it replaces once no spawn can use it (forked
 * children have their own copies). sup_config_free() stays safe after. */
void sup_config_release_assets(struct sup_config *c);

/* Would children of `a` and of `b` be built the same? Everything a child
 * is built from (kind, guest, memory_mib, vcpus, seccomp, cgroup limits,
 * ...) including the loaded bytes; not what only the supervisor's
 * bookkeeping uses (min_idle, max, health, refill, allow_uids,
 * max_idle_age_ms). A reload bumps a pool's generation when this is
 * false. */
bool sup_pool_config_same_build(const struct sup_pool_config *a,
				const struct sup_pool_config *b);

const char *sup_pool_kind_name(enum sup_pool_kind k);
const char *sup_seccomp_mode_name(enum vmp_seccomp_mode m);
const char *sup_cgroup_mode_name(enum sup_cgroup_mode m);
const char *sup_reuse_mode_name(enum sup_reuse_mode m);
const char *sup_disk_mode_name(enum sup_disk_mode m);

/* Jail uids in use: jail_uid_base .. jail_uid_base + this - 1 (one per
 * child any pool may have at once: the sum of the pools' max, and one more
 * per child of a pool with a disk, for its backend). */
unsigned sup_config_jail_slots(const struct sup_config *c);

/* Is `uid` in the pool's allow_uids? */
int sup_pool_allows(const struct sup_pool_config *p, uid_t uid);

#endif
