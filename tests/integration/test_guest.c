/* The guest runtime (vmproc/runtime/, its vCPU loop vmproc/kvm/vcpu.c) with
 * the default guest, as a library: a VM built the way a pool child builds it, the guest booted, its
 * functions called; and each way a guest can misbehave, which must end the
 * call with a clear outcome and leave the host process unharmed. Needs
 * /dev/kvm; skipped loudly otherwise. The fuzz test is test_guest_fuzz.c. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "runtime/runtime.h"
#include "sha256_ref.h"
#include "testing.h"
#include "hatchery/clock.h"

static struct vmp_kvm_host host = { .kvm_fd = -1 };
static uint8_t *elf;
static size_t elf_len;
static struct vmp_guest_image img;

static void load_file(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	cr_assert(fd >= 0, "%s: %s", path, strerror(errno));
	struct stat st;
	cr_assert_eq(fstat(fd, &st), 0);
	elf_len = (size_t)st.st_size;
	elf = malloc(elf_len);
	cr_assert_eq(read(fd, elf, elf_len), (ssize_t)elf_len);
	close(fd);
}

static void setup(void)
{
	struct hatch_err err = { 0 };
	if (vmp_kvm_host_open(&host, "/dev/kvm", &err) < 0)
		t_skip("this test needs /dev/kvm: %s", err.msg);
	cr_assert_eq(vmp_guest_deadline_init(&err), 0, "%s", err.msg);
	load_file(HATCH_DEFAULT_GUEST);
	cr_assert_eq(vmp_guest_elf_parse(elf, elf_len, &img, &err), 0, "%s", err.msg);
}

static void teardown(void)
{
	vmp_kvm_host_close(&host);
	free(elf);
}

TestSuite(guest, .init = setup, .fini = teardown, .timeout = 60);

struct booted {
	struct vmp_vm vm;
	struct vmp_guest g;
};

static void boot(struct booted *b, unsigned mib)
{
	struct hatch_err err = { 0 };
	struct vmp_guest_result res;
	cr_assert_eq(vmp_vm_create(&host, (size_t)mib << 20, 1, &b->vm, &err), 0, "%s", err.msg);
	int r = vmp_guest_boot(&b->vm, &img, 1000, &b->g, &res, &err);
	cr_assert_eq(r, 0, "%s", err.msg);
}

Test(guest, boots_and_lists_functions)
{
	struct booted b;
	boot(&b, 64);
	const char *want[] = { "echo", "sha256", "alloc", "fault", "spin", "ports", "log",
			       "random" };
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		bool found = false;
		for (unsigned j = 0; j < b.g.n_fn; j++)
			found |= strcmp(b.g.fn[j], want[i]) == 0;
		cr_expect(found, "function %s not registered", want[i]);
	}
	cr_log_info("boot to ready: %.1f us", b.g.boot_ns / 1e3);
	vmp_vm_destroy(&b.vm);
}

Test(guest, echo_and_heartbeat)
{
	struct booted b;
	boot(&b, 64);
	struct vmp_guest_result res;
	static const char msg[] = "hello, guest";
	cr_assert_eq(vmp_guest_call(&b.g, "echo", msg, sizeof(msg), 100, &res), 0, "%s", res.message);
	cr_assert_eq(res.out_len, sizeof(msg));
	cr_assert_eq(memcmp(res.out, msg, sizeof(msg)), 0);
	cr_assert_eq(vmp_guest_call(&b.g, "echo", NULL, 0, 0, &res), 0, "%s", res.message);
	cr_assert_eq(res.out_len, 0);
	cr_assert_eq(vmp_guest_heartbeat(&b.g, 100, &res), 0, "%s", res.message);
	/* An unknown name is the caller's mistake: the guest lives on. */
	cr_assert_eq(vmp_guest_call(&b.g, "nope", NULL, 0, 100, &res), -1);
	cr_assert_eq(res.outcome, VMP_GUEST_NO_FUNCTION);
	cr_assert_eq(vmp_guest_call(&b.g, "echo", "x", 1, 100, &res), 0, "%s", res.message);

	/* Round trip of a small echo, for the record. */
	uint64_t t0 = hatch_now_ns();
	for (int i = 0; i < 1000; i++)
		vmp_guest_call(&b.g, "echo", msg, sizeof(msg), 0, &res);
	cr_log_info("echo call (1000x, in process): %.1f us each", (hatch_now_ns() - t0) / 1e3 / 1000);
	vmp_vm_destroy(&b.vm);
}

Test(guest, sha256_matches_host)
{
	struct booted b;
	boot(&b, 64);
	struct vmp_guest_result res;
	size_t sizes[] = { 0, 1, 55, 56, 63, 64, 65, 1000, 65536, 1 << 20 };
	uint8_t *buf = malloc(1 << 20);
	for (size_t i = 0; i < (1u << 20); i++)
		buf[i] = (uint8_t)(i * 131 + 7);
	for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
		uint8_t want[32];
		sha256_ref(buf, sizes[k], want);
		cr_assert_eq(vmp_guest_call(&b.g, "sha256", buf, sizes[k], 1000, &res), 0, "%s", res.message);
		cr_assert_eq(res.out_len, 32);
		cr_assert_eq(memcmp(res.out, want, 32), 0, "sha256 of %zu bytes differs", sizes[k]);
	}
	/* 1 MiB in the guest against the same C code on the host. */
	uint8_t d[32];
	uint64_t t0 = hatch_now_ns();
	for (int i = 0; i < 10; i++)
		vmp_guest_call(&b.g, "sha256", buf, 1 << 20, 1000, &res);
	uint64_t tg = (hatch_now_ns() - t0) / 10;
	t0 = hatch_now_ns();
	for (int i = 0; i < 10; i++)
		sha256_ref(buf, 1 << 20, d);
	uint64_t th = (hatch_now_ns() - t0) / 10;
	cr_log_info("sha256 of 1 MiB: guest %.2f ms (incl. copy in), host (same C) %.2f ms, ratio %.2f",
		    tg / 1e6, th / 1e6, (double)tg / (double)th);
	free(buf);
	vmp_vm_destroy(&b.vm);
}

Test(guest, log_lines_reach_the_host)
{
	struct booted b;
	boot(&b, 64);
	struct vmp_guest_result res;
	static const char in[] = "one\ntwo\nthree";
	cr_assert_eq(vmp_guest_call(&b.g, "log", in, strlen(in), 100, &res), 0, "%s", res.message);
	cr_assert_eq(res.log_len, strlen("one\ntwo\nthree\n"));
	cr_assert_eq(memcmp(res.log, "one\ntwo\nthree\n", res.log_len), 0);
	/* More than the host keeps: counted, not kept, and the call works. */
	char *many = malloc(200 * 100);
	size_t n = 0;
	for (int i = 0; i < 200; i++)
		n += (size_t)sprintf(many + n, "line %03d of a long log ..............................................\n", i);
	cr_assert_eq(vmp_guest_call(&b.g, "log", many, n, 1000, &res), 0, "%s", res.message);
	cr_assert(res.log_dropped > 0);
	cr_assert(res.log_len <= VMP_GUEST_LOG_MAX);
	free(many);
	vmp_vm_destroy(&b.vm);
}

/* Every misbehaviour: the outcome, the message, and the guest is dead. */
static void expect_dead(struct booted *b, struct vmp_guest_result *res, enum vmp_guest_outcome o)
{
	cr_assert_eq(res->outcome, o, "outcome %s (%s), want %s", vmp_guest_outcome_name(res->outcome),
		     res->message, vmp_guest_outcome_name(o));
	cr_assert(res->message[0]);
	struct vmp_guest_result again;
	cr_assert_eq(vmp_guest_call(&b->g, "echo", "x", 1, 100, &again), -1, "a dead guest was called");
	cr_assert_eq(again.outcome, VMP_GUEST_HOST_ERROR);
}

Test(guest, fault_null_read_is_precise)
{
	struct booted b;
	boot(&b, 64);
	struct vmp_guest_result res;
	cr_assert_eq(vmp_guest_call(&b.g, "fault", NULL, 0, 1000, &res), -1);
	cr_assert_eq(res.fault.vector, 14);
	cr_assert_eq(res.fault.address, 0);
	cr_assert_eq(res.fault.error_code & 0x7, 0x4, "user read, not present: %#llx",
		     (unsigned long long)res.fault.error_code);
	cr_assert(res.fault.rip >= HATCH_IMAGE_BASE && res.fault.rip < HATCH_IMAGE_END);
	cr_log_info("%s (%.1f us)", res.message, res.run_ns / 1e3);
	expect_dead(&b, &res, VMP_GUEST_FAULT);
	vmp_vm_destroy(&b.vm);
}

Test(guest, fault_kinds)
{
	static const struct {
		const char *arg;
		uint32_t vector;
		uint64_t err_mask, err;
	} k[] = {
		{ "write", 14, 0x7, 0x7 }, /* user write, protection violation */
		{ "ud", 6, 0, 0 },
		{ "de", 0, 0, 0 },
		{ "bp", 3, 0, 0 },
	};
	for (size_t i = 0; i < sizeof(k) / sizeof(k[0]); i++) {
		struct booted b;
		boot(&b, 64);
		struct vmp_guest_result res;
		cr_assert_eq(vmp_guest_call(&b.g, "fault", k[i].arg, strlen(k[i].arg), 1000, &res), -1);
		cr_assert_eq(res.outcome, VMP_GUEST_FAULT, "%s: %s", k[i].arg, res.message);
		cr_assert_eq(res.fault.vector, k[i].vector, "%s: %s", k[i].arg, res.message);
		cr_assert_eq(res.fault.error_code & k[i].err_mask, k[i].err, "%s: %s", k[i].arg, res.message);
		expect_dead(&b, &res, VMP_GUEST_FAULT);
		vmp_vm_destroy(&b.vm);
	}
}

Test(guest, spin_hits_the_deadline)
{
	struct booted b;
	boot(&b, 64);
	struct vmp_guest_result res;
	uint64_t t0 = hatch_now_ns();
	cr_assert_eq(vmp_guest_call(&b.g, "spin", NULL, 0, 50, &res), -1);
	uint64_t ms = (hatch_now_ns() - t0) / 1000000;
	cr_assert(ms >= 50 && ms < 1000, "deadline of 50 ms took %llu ms", (unsigned long long)ms);
	expect_dead(&b, &res, VMP_GUEST_DEADLINE);
	vmp_vm_destroy(&b.vm);
}

Test(guest, ports_and_mmio_are_refused)
{
	static const char *args[] = { "", "in", "mmio" };
	for (size_t i = 0; i < 3; i++) {
		struct booted b;
		boot(&b, 64);
		struct vmp_guest_result res;
		/* The control, in the same VM: a call is hypercalls on port
		 * 0xe0, which the same TSS bitmap lets through. */
		cr_assert_eq(vmp_guest_call(&b.g, "echo", "x", 1, 1000, &res), 0, "%s", res.message);
		cr_assert_eq(vmp_guest_call(&b.g, "ports", args[i], strlen(args[i]), 1000, &res), -1);
		if (i < 2) {
			cr_assert_eq(res.outcome, VMP_GUEST_BAD_IO, "%s: %s", args[i], res.message);
			cr_assert_eq(res.fault.vector, 13);
		} else {
			/* MMIO addresses are not mapped at all: a page fault. */
			cr_assert_eq(res.outcome, VMP_GUEST_FAULT, "%s", res.message);
			cr_assert_eq(res.fault.address, 0xfee00000ull);
		}
		cr_log_info("ports %s: %s", args[i], res.message);
		expect_dead(&b, &res, res.outcome);
		vmp_vm_destroy(&b.vm);
	}
}

/* The TSS I/O bitmap bit by bit around the hypercall port: 0xe0 open at
 * CPL 3, its neighbours in the same bitmap byte closed, the fault port
 * 0xe1 above all (a guest that could write it would forge fault reports).
 * Under QEMU's emulator this also proves the bitmap is consulted at all:
 * with a busy TSS in TR it #GPs every port (vmp_kvm_tr_type). */
Test(guest, only_the_hypercall_port_is_open)
{
	struct hatch_err err = { 0 };
	struct vmp_vm vm;
	cr_assert_eq(vmp_vm_create(&host, 32u << 20, 1, &vm, &err), 0, "%s", err.msg);
	struct vmp_guest g;
	memset(&g, 0, sizeof(g));
	g.vm = &vm;
	/* mov $0, %al; out %al, $port: hypercall 0 on 0xe0 ends the run. */
	static const uint8_t ports[] = { HATCH_HC_PORT, HATCH_FAULT_PORT, HATCH_HC_PORT - 1,
					 HATCH_HC_PORT + 7, 0x80 };
	for (size_t i = 0; i < sizeof(ports); i++) {
		const uint8_t code[] = { 0xb0, 0x00, 0xe6, ports[i] };
		struct vmp_guest_result res;
		int r = vmp_guest_run_code(&g, code, sizeof(code), 1000, &res);
		if (ports[i] == HATCH_HC_PORT) {
			cr_assert_eq(r, 0, "out to port %#x: %s: %s", ports[i],
				     vmp_guest_outcome_name(res.outcome), res.message);
			continue;
		}
		cr_assert_eq(res.outcome, VMP_GUEST_BAD_IO, "out to port %#x: %s: %s", ports[i],
			     vmp_guest_outcome_name(res.outcome), res.message);
		cr_assert_eq(res.fault.vector, 13, "port %#x", ports[i]);
		cr_assert_eq(res.fault.rip, HATCH_IMAGE_BASE + 2, "port %#x", ports[i]);
	}
	vmp_vm_destroy(&vm);
}

Test(guest, alloc_within_and_beyond_memory)
{
	struct booted b;
	boot(&b, 64);
	struct vmp_guest_result res;
	cr_assert_eq(vmp_guest_call(&b.g, "alloc", "16", 2, 2000, &res), 0, "%s", res.message);
	cr_assert_eq(res.out_len, strlen("touched 16 MiB"));
	/* More than the VM has: the SDK's allocator says no, the guest says why. */
	cr_assert_eq(vmp_guest_call(&b.g, "alloc", "100", 3, 2000, &res), -1);
	cr_assert_eq(res.outcome, VMP_GUEST_ERROR, "%s", res.message);
	cr_assert(strstr(res.message, "out of memory"), "%s", res.message);
	/* A function error does not kill the guest. */
	cr_assert_eq(vmp_guest_call(&b.g, "echo", "x", 1, 100, &res), 0, "%s", res.message);
	vmp_vm_destroy(&b.vm);
}

Test(guest, triple_fault)
{
	struct booted b;
	boot(&b, 64);
	struct vmp_guest_result res;
	vmp_guest_break_idt(&b.g);
	cr_assert_eq(vmp_guest_call(&b.g, "fault", NULL, 0, 1000, &res), -1);
	expect_dead(&b, &res, VMP_GUEST_TRIPLE_FAULT);
	vmp_vm_destroy(&b.vm);
}

Test(guest, too_little_memory_is_refused)
{
	struct vmp_vm vm;
	struct vmp_guest g;
	struct vmp_guest_result res;
	struct hatch_err err = { 0 };
	cr_assert_eq(vmp_vm_create(&host, 16u << 20, 1, &vm, &err), 0, "%s", err.msg);
	cr_assert_eq(vmp_guest_boot(&vm, &img, 1000, &g, &res, &err), -1);
	cr_assert(strstr(err.msg, "at least"), "%s", err.msg);
	vmp_vm_destroy(&vm);
}
