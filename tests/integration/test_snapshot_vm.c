/* Save and Restore through a real jailed hatcheryd: a booted VM saved
 * after it has served calls, restored into a VM leased from an empty pool,
 * which then serves calls as the original did; damaged snapshots, a
 * snapshot of another memory size or of a Linux guest and wrong fd counts
 * are refused and the daemon carries on. The file format alone is tested by test_snapshot.
 *
 * Without /dev/kvm every test is reported as skipped, never as passed. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "sha256_ref.h"
#include "snapshot.h"

#ifndef HATCH_DEFAULT_GUEST
#error "HATCH_DEFAULT_GUEST must name the default guest ELF"
#endif

#define E(x) HATCHERY__V1__ERROR_CODE__##x

#define POOL(name, kind, mib, body)                                              \
	"[pool \"" name "\"]\nkind = " kind "\n" body "memory_mib = " #mib        \
	"\nmin_idle = 1\nmax = 3\n"
#define GUEST "guest = " HATCH_DEFAULT_GUEST "\n"
#define POOLS POOL("b", "booted", 64, GUEST) POOL("e", "empty", 64, "") \
	POOL("s", "empty", 32, "")

TestSuite(snapshot_vm, .fini = h_teardown, .timeout = 60);

static int acquire_vm(struct harness *h, const char *pool)
{
	int fd = -1;
	struct hatch_err err = { 0 };
	Hatchery__V1__AcquireReply *info = NULL;
	cr_assert_eq(hatch_acquire(h->c, pool, 5000, &fd, &info, &err), 0,
		     "Acquire from \"%s\": %s", pool, err.msg);
	hatch_free(info);
	return fd;
}

static void fill_random(uint8_t *buf, size_t len)
{
	for (size_t got = 0; got < len;) {
		ssize_t n = getrandom(buf + got, len - got, 0);
		cr_assert_gt(n, 0);
		got += (size_t)n;
	}
}

/* echo and sha256 of random bytes, both checked on the host. */
static void calls_ok(int vm, const char *what)
{
	uint8_t in[3000], want[32];
	fill_random(in, sizeof(in));
	Hatchery__V1__VmCallReply *rep = NULL;
	struct hatch_err err = { 0 };
	cr_assert_eq(hatch_vm_call(vm, "echo", in, sizeof(in), 0, &rep, &err), 0,
		     "%s: echo: %s (%s)", what, err.msg, hatch_err_code_name(err.code));
	cr_assert_eq(rep->result.len, sizeof(in), "%s: echo length", what);
	cr_assert_arr_eq(rep->result.data, in, sizeof(in), "%s: echo differs", what);
	hatch_free(rep);
	cr_assert_eq(hatch_vm_call(vm, "sha256", in, sizeof(in), 0, &rep, &err), 0,
		     "%s: sha256: %s (%s)", what, err.msg, hatch_err_code_name(err.code));
	sha256_ref(in, sizeof(in), want);
	cr_assert_eq(rep->result.len, 32);
	cr_assert_arr_eq(rep->result.data, want, 32, "%s: sha256 differs", what);
	hatch_free(rep);
}

static int tmpfile_in(struct harness *h)
{
	char path[160];
	snprintf(path, sizeof(path), "%s/snap.XXXXXX", h->dir);
	int fd = mkostemp(path, O_CLOEXEC);
	cr_assert_geq(fd, 0, "mkostemp: %s", strerror(errno));
	unlink(path);
	return fd;
}

/* Save VM `vm` to a new unlinked temp file; returns its fd. */
static int save_to_file(struct harness *h, int vm)
{
	int fd = tmpfile_in(h);
	Hatchery__V1__VmSaveReply *sr = NULL;
	struct hatch_err err = { 0 };
	cr_assert_eq(hatch_vm_save(vm, fd, &sr, &err), 0, "Save: %s (%s)", err.msg,
		     hatch_err_code_name(err.code));
	struct stat st;
	cr_assert_eq(fstat(fd, &st), 0);
	cr_assert_eq((uint64_t)st.st_size, sr->bytes_written, "file %lld bytes, reply says %llu",
		     (long long)st.st_size, (unsigned long long)sr->bytes_written);
	cr_assert_lt((uint64_t)st.st_size, 64ull << 20, "zero pages should not be stored");
	fprintf(stderr, "save (64 MiB booted guest): vcpu state %.1f us, vm state %.1f us, "
		"memory write %.1f us, %llu bytes\n", sr->vcpu_state_ns / 1e3,
		sr->vm_state_ns / 1e3, sr->memory_write_ns / 1e3,
		(unsigned long long)sr->bytes_written);
	hatch_free(sr);
	return fd;
}

/* A copy of the file in `fd`, then changed by `edit`. */
static int copy_file(struct harness *h, int fd, off_t trunc_to, off_t flip_at)
{
	struct stat st;
	cr_assert_eq(fstat(fd, &st), 0);
	uint8_t *b = malloc((size_t)st.st_size);
	cr_assert_not_null(b);
	cr_assert_eq(pread(fd, b, (size_t)st.st_size, 0), st.st_size);
	if (flip_at >= 0)
		b[flip_at] ^= 0x40;
	size_t len = trunc_to >= 0 ? (size_t)trunc_to : (size_t)st.st_size;
	int out = tmpfile_in(h);
	cr_assert_eq(pwrite(out, b, len, 0), (ssize_t)len);
	free(b);
	return out;
}

/* A Linux guest's snapshot (devices, no runtime section) with the saved
 * file's vCPUs, VM state and memory: sound, and of this VM's size and
 * host, but not for a kernel-less VM. */
static int linux_kind_copy(struct harness *h, int snap)
{
	struct snap_image img;
	struct hatch_err err = { 0 };
	cr_assert_eq(snap_parse_fd(snap, NULL, &img, &err), 0, "%s", err.msg);
	uint8_t *file = mmap(NULL, img.file_size, PROT_READ, MAP_PRIVATE, snap, 0);
	cr_assert_neq(file, MAP_FAILED);
	uint8_t *mem = calloc(1, img.st.mem_size);
	cr_assert_not_null(mem);
	for (uint32_t i = 0; i < img.nextents; i++)
		memcpy(mem + snap_gpa_to_ram_offset(img.ext[i].gpa), file + img.ext[i].file_offset,
		       img.ext[i].len);
	struct snap_devices d = { .machine = SNAP_MACHINE_LINUX, .nvirtio = 1 };
	d.virtio[0].device_id = 3;
	d.virtio[0].nqueues = 2;
	struct snap_state s = img.st;
	s.mem = mem;
	s.runtime = NULL;
	s.runtime_len = 0;
	s.devices = &d;
	int out = tmpfile_in(h);
	cr_assert_eq(snap_write_fd(out, &s, &err), 0, "%s", err.msg);
	free(mem);
	munmap(file, img.file_size);
	snap_image_free(&img);
	return out;
}

static Hatchery__V1__VmReply *raw(int vm, uint64_t id, int body_case, const int *fds,
				  size_t nfds)
{
	Hatchery__V1__VmRequest req = HATCHERY__V1__VM_REQUEST__INIT;
	Hatchery__V1__VmSaveRequest save = HATCHERY__V1__VM_SAVE_REQUEST__INIT;
	Hatchery__V1__VmRestoreRequest restore = HATCHERY__V1__VM_RESTORE_REQUEST__INIT;
	req.id = id;
	req.body_case = body_case;
	if (body_case == HATCHERY__V1__VM_REQUEST__BODY_SAVE)
		req.save = &save;
	else
		req.restore = &restore;
	cr_assert_eq(h_send_pb(vm, &req.base, fds, nfds), 0);
	ProtobufCMessage *m = NULL;
	cr_assert_eq(h_recv_pb(vm, &hatchery__v1__vm_reply__descriptor, H_CLIENT_TIMEOUT_MS,
			       &m, NULL), 1);
	return (Hatchery__V1__VmReply *)m;
}

static void restore_fails(int vm, int fd, int code, const char *needle, const char *what)
{
	struct hatch_err err = { 0 };
	Hatchery__V1__VmRestoreReply *rr = NULL;
	int r = hatch_vm_restore(vm, fd, &rr, &err);
	if (r == 0)
		hatch_free(rr);
	cr_assert_eq(r, -1, "%s: Restore succeeded", what);
	cr_assert_eq(err.code, code, "%s: %s (\"%s\"), expected %s", what,
		     hatch_err_code_name(err.code), err.msg, hatch_err_code_name(code));
	cr_assert_not_null(strstr(err.msg, needle), "%s: unclear message \"%s\" (wanted \"%s\")",
			   what, err.msg, needle);
}

Test(snapshot_vm, save_then_restore_into_an_empty_vm)
{
	struct harness *h = h_start(POOLS);
	int b = acquire_vm(h, "b");
	calls_ok(b, "booted, before Save");
	int snap = save_to_file(h, b);
	calls_ok(b, "booted, after Save"); /* the VM stays usable */

	int e = acquire_vm(h, "e");
	Hatchery__V1__VmRestoreReply *rr = NULL;
	struct hatch_err err = { 0 };
	cr_assert_eq(hatch_vm_restore(e, snap, &rr, &err), 0, "Restore: %s (%s)", err.msg,
		     hatch_err_code_name(err.code));
	fprintf(stderr, "restore: map %.1f us, vcpu state %.1f us, vm state %.1f us\n",
		rr->map_ns / 1e3, rr->vcpu_state_ns / 1e3, rr->vm_state_ns / 1e3);
	bool has_echo = false;
	for (size_t i = 0; i < rr->n_functions; i++)
		has_echo |= strcmp(rr->functions[i], "echo") == 0;
	cr_assert(has_echo, "restored guest has no echo (%zu functions)", rr->n_functions);
	hatch_free(rr);
	calls_ok(e, "restored");
	calls_ok(e, "restored, again");
	Hatchery__V1__VmInfoReply *info = NULL;
	cr_assert_eq(hatch_vm_info(e, &info, &err), 0, "Info: %s", err.msg);
	cr_assert_geq(info->n_guest_functions, 2, "Info lists %zu guest functions",
		      info->n_guest_functions);
	hatch_free(info);
	/* A VM with a guest takes no second Restore. */
	restore_fails(e, snap, E(FAILED_PRECONDITION), "already has a guest", "second Restore");
	calls_ok(b, "booted, after the restore elsewhere");
	cr_assert_eq(hatch_vm_release(e, &err), 0);
	cr_assert_eq(hatch_vm_release(b, &err), 0);
	close(snap);
	h_finish(h);
}

Test(snapshot_vm, damaged_or_mismatched_snapshots_are_refused)
{
	struct harness *h = h_start(POOLS);
	int b = acquire_vm(h, "b");
	calls_ok(b, "booted");
	int snap = save_to_file(h, b);
	struct stat st;
	cr_assert_eq(fstat(snap, &st), 0);

	int e = acquire_vm(h, "e");
	int trunc = copy_file(h, snap, st.st_size - 4096, -1);
	restore_fails(e, trunc, E(INVALID_ARGUMENT), "truncated", "truncated by a page");
	close(trunc);
	int half = copy_file(h, snap, 200, -1);
	restore_fails(e, half, E(INVALID_ARGUMENT), "snapshot", "truncated in the sections");
	close(half);
	/* A byte of vcpu0's registers (the first section's payload). */
	int flip = copy_file(h, snap, -1, 128 + 24 + 10);
	restore_fails(e, flip, E(INVALID_ARGUMENT), "checksum", "flipped byte in a section");
	close(flip);
	int empty = tmpfile_in(h);
	restore_fails(e, empty, E(INVALID_ARGUMENT), "snapshot", "empty file");
	close(empty);
	/* Sound, but of a Linux guest: refused before the VM is touched. */
	int lin = linux_kind_copy(h, snap);
	restore_fails(e, lin, E(INVALID_ARGUMENT), "the snapshot is of a Linux guest",
		      "a Linux guest's snapshot");
	close(lin);
	/* None of that touched the VM: the good snapshot still restores. */
	Hatchery__V1__VmRestoreReply *rr = NULL;
	struct hatch_err err = { 0 };
	cr_assert_eq(hatch_vm_restore(e, snap, &rr, &err), 0, "Restore after refusals: %s",
		     err.msg);
	hatch_free(rr);
	calls_ok(e, "restored after refusals");

	/* Another memory size: the message names both. */
	int s = acquire_vm(h, "s");
	restore_fails(s, snap, E(FAILED_PRECONDITION), "0x4000000", "64 MiB snapshot, 32 MiB VM");
	restore_fails(s, snap, E(FAILED_PRECONDITION), "0x2000000", "64 MiB snapshot, 32 MiB VM");
	cr_assert_eq(hatch_vm_release(s, &err), 0);
	cr_assert_eq(hatch_vm_release(e, &err), 0);
	cr_assert_eq(hatch_vm_release(b, &err), 0);
	close(snap);
	h_finish(h);
}

Test(snapshot_vm, save_and_restore_carry_exactly_one_fd)
{
	struct harness *h = h_start(POOLS);
	int b = acquire_vm(h, "b");
	int e = acquire_vm(h, "e");
	int f = tmpfile_in(h);
	int two[2] = { f, f };
	const int SAVE = HATCHERY__V1__VM_REQUEST__BODY_SAVE;
	const int RESTORE = HATCHERY__V1__VM_REQUEST__BODY_RESTORE;
	struct {
		int vm, body;
		size_t nfds;
	} cases[] = { { b, SAVE, 0 }, { b, SAVE, 2 }, { e, RESTORE, 0 }, { e, RESTORE, 2 } };
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		Hatchery__V1__VmReply *rep = raw(cases[i].vm, 10 + i, cases[i].body, two,
						 cases[i].nfds);
		cr_assert_not_null(rep->error, "case %zu: no error", i);
		cr_assert_eq(rep->error->code, E(UNEXPECTED_FDS), "case %zu: %s", i,
			     hatch_err_code_name(rep->error->code));
		cr_assert_eq(rep->id, 10 + i);
		hatch_free(rep);
	}
	/* Save of an empty VM: nothing to save. */
	Hatchery__V1__VmReply *rep = raw(e, 20, SAVE, &f, 1);
	cr_assert_not_null(rep->error);
	cr_assert_eq(rep->error->code, E(FAILED_PRECONDITION));
	hatch_free(rep);
	calls_ok(b, "booted after refused requests");
	struct hatch_err err = { 0 };
	cr_assert_eq(hatch_vm_release(e, &err), 0);
	cr_assert_eq(hatch_vm_release(b, &err), 0);
	close(f);
	h_finish(h);
}
