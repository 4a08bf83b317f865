/* runtime.c - the kernel-less guest runtime: boot, calls and heartbeats
 * over the hypercall ABI (hatchery_guest_abi.h), and the runtime's section
 * of a snapshot. The x86 state it runs on is tables.c; the vCPU loop is
 * kvm/vcpu.c. See runtime.h and docs/guest.md. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

#include "hatchery/clock.h"
#include "hatchery/cleanup.h"
#include "hatchery/v1/common.pb-c.h"
#include "runtime/runtime.h"
#include "runtime/tables.h"

#define E(x) HATCHERY__V1__ERROR_CODE__##x

/* ---- the hypercall ABI ---------------------------------------------------- */

static void take_log(struct vmp_guest *g, struct vmp_guest_result *res)
{
	struct hatch_shared *sh = g->shared;
	uint32_t n = sh->log_len;
	if (n > HATCH_LOG_MAX)
		n = HATCH_LOG_MAX; /* the guest's word is not trusted */
	if (res->log_len + n + 1 > sizeof(res->log)) {
		res->log_dropped++;
		return;
	}
	memcpy(res->log + res->log_len, sh->log, n);
	res->log_len += n;
	res->log[res->log_len++] = '\n';
}

struct hypercall_wait {
	struct vmp_guest *g;
	uint8_t want; /* READY or DONE; 0: any hypercall ends the run */
};

/* A port I/O exit (vmp_vcpu_io_fn): the fault stub's report, a log line, or
 * the hypercall the run waits for; anything else ends the run as an error. */
static bool on_port_io(void *ctx, struct kvm_run *kr, struct vmp_guest_result *res)
{
	const struct hypercall_wait *w = ctx;
	struct vmp_guest *g = w->g;
	uint8_t v = *((uint8_t *)kr + kr->io.data_offset);
	if (kr->io.port == HATCH_FAULT_PORT) {
		vmp_rt_read_fault(g, res);
		return false;
	}
	if (kr->io.port != HATCH_HC_PORT) {
		/* The bitmap should make this impossible; if the
		 * hypervisor let it through, it is still an error. */
		res->outcome = VMP_GUEST_BAD_IO;
		snprintf(res->message, sizeof(res->message),
			 "guest accessed I/O port %#x", kr->io.port);
		return false;
	}
	if (kr->io.direction != KVM_EXIT_IO_OUT || kr->io.size != 1 ||
	    kr->io.count != 1) {
		res->outcome = VMP_GUEST_PROTOCOL;
		snprintf(res->message, sizeof(res->message),
			 "malformed hypercall: %s of size %u x %u on port %#x",
			 kr->io.direction == KVM_EXIT_IO_OUT ? "out" : "in",
			 kr->io.size, kr->io.count, kr->io.port);
		return false;
	}
	if (v == HATCH_HC_LOG) {
		take_log(g, res);
		return true;
	}
	if (v == w->want)
		return false;
	res->outcome = VMP_GUEST_PROTOCOL;
	snprintf(res->message, sizeof(res->message),
		 "unexpected hypercall %u (waiting for %u)", v, w->want);
	return false;
}

/* Run until the guest says `want` (READY or DONE) or something ends the
 * run. Returns the outcome; res->message is set for every non-OK one. */
static enum vmp_guest_outcome run(struct vmp_guest *g, uint8_t want, uint32_t deadline_ms,
				  struct vmp_guest_result *res)
{
	struct hypercall_wait w = { .g = g, .want = want };
	return vmp_vcpu_run(g->vm, 0, deadline_ms, on_port_io, &w, res);
}

/* ---- boot and calls ------------------------------------------------------- */

static void result_init(struct vmp_guest_result *res)
{
	res->outcome = VMP_GUEST_OK;
	memset(&res->fault, 0, sizeof(res->fault));
	res->out = NULL;
	res->out_len = 0;
	res->message[0] = '\0';
	res->log_len = 0;
	res->log_dropped = 0;
	res->exits = 0;
	res->run_ns = 0;
}

static void mark_dead(struct vmp_guest *g, struct vmp_guest_result *res)
{
	if (res->outcome != VMP_GUEST_OK && res->outcome != VMP_GUEST_ERROR &&
	    res->outcome != VMP_GUEST_NO_FUNCTION)
		g->dead = true;
}

/* The host-side fields a VM of this size gives, without writing RAM. */
static int setup_fields(struct vmp_vm *vm, struct vmp_guest *g, struct hatch_err *err)
{
	memset(g, 0, sizeof(*g));
	g->vm = vm;
	if (vm->nvcpus < 1 || !vm->run[0])
		return hatch_err_set(err, E(VM_ERROR), 0, "the VM has no vCPU");
	if (vm->mem_size < HATCH_MIN_MEMORY)
		return hatch_err_set(err, E(INVALID_ARGUMENT), 0,
				     "a guest needs at least %llu MiB of memory, the VM has %zu",
				     HATCH_MIN_MEMORY >> 20, vm->mem_size >> 20);
	/* One page directory maps the first GiB; more RAM stays unmapped. */
	uint64_t end = vm->mem_size < (1ull << 30) ? vm->mem_size : (1ull << 30);
	g->heap_end = end & ~(MIB2 - 1);
	g->shared = (struct hatch_shared *)rt_gpa(g, HATCH_SHARED_ADDR);
	return 0;
}

/* Give the guest its generation and fresh seed bytes (struct hatch_shared,
 * "Uniqueness"). getrandom in the jailed child, at the moment of use: bytes
 * drawn before the fork, or by the supervisor ahead of time, could end up
 * in two VMs. */
static int set_generation(struct vmp_guest *g, uint64_t generation, struct hatch_err *err)
{
	uint8_t seed[HATCH_SEED_SIZE];
	for (size_t got = 0; got < sizeof(seed);) {
		ssize_t n = getrandom(seed + got, sizeof(seed) - got, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return hatch_err_set(err, E(VM_ERROR), n < 0 ? errno : EIO,
					     "getrandom: seed bytes for the guest");
		got += (size_t)n;
	}
	memcpy(g->shared->seed, seed, sizeof(seed));
	g->shared->generation = generation;
	return 0;
}

static int setup(struct vmp_vm *vm, struct vmp_guest *g, struct hatch_err *err)
{
	if (setup_fields(vm, g, err) < 0)
		return -1;
	memset(g->shared, 0, PAGE);
	g->shared->magic = HATCH_SHARED_MAGIC;
	g->shared->abi_version = HATCH_ABI_VERSION;
	g->shared->heap_base = HATCH_HEAP_BASE;
	g->shared->heap_end = g->heap_end;
	if (set_generation(g, 0, err) < 0)
		return -1;
	vmp_rt_write_tables(g);
	return 0;
}

int vmp_guest_boot(struct vmp_vm *vm, const struct vmp_guest_image *img,
		   uint32_t deadline_ms, struct vmp_guest *g,
		   struct vmp_guest_result *res, struct hatch_err *err)
{
	uint64_t t0 = hatch_now_ns();
	result_init(res);
	if (setup(vm, g, err) < 0)
		return -1;
	vmp_rt_write_page_tables(g, img, false);
	for (unsigned j = 0; j < img->nsegs; j++) {
		const struct vmp_guest_seg *s = &img->seg[j];
		memcpy(rt_gpa(g, s->vaddr), img->elf + s->offset, s->filesz);
		/* .bss: RAM is fresh and zero, but say so rather than rely on it. */
		memset(rt_gpa(g, s->vaddr + s->filesz), 0, s->memsz - s->filesz);
	}
	if (vmp_rt_reset_vcpu(g, img->entry, err) < 0)
		return -1;
	if (run(g, HATCH_HC_READY, deadline_ms, res) != VMP_GUEST_OK) {
		g->dead = true;
		return hatch_err_set(err, E(VM_ERROR), 0, "guest did not get ready: %s", res->message);
	}
	uint32_t n = g->shared->n_fn;
	if (n > HATCH_FN_MAX) {
		g->dead = true;
		return hatch_err_set(err, E(VM_ERROR), 0, "guest registered %u functions, at most %d", n, HATCH_FN_MAX);
	}
	for (uint32_t i = 0; i < n; i++) {
		memcpy(g->fn[i], g->shared->fn[i], HATCH_FN_NAME_MAX);
		g->fn[i][HATCH_FN_NAME_MAX - 1] = '\0'; /* untrusted */
	}
	g->n_fn = n;
	g->ready = true;
	g->boot_ns = hatch_now_ns() - t0;
	return 0;
}

static int request(struct vmp_guest *g, uint32_t op, uint32_t fn_index,
		   const void *in, size_t in_len, uint32_t deadline_ms,
		   struct vmp_guest_result *res)
{
	struct hatch_shared *sh = g->shared;
	if (in_len)
		memcpy(rt_gpa(g, HATCH_IN_BUF), in, in_len);
	sh->op = op;
	sh->fn_index = fn_index;
	sh->in_len = in_len;
	sh->status = 0;
	sh->out_len = 0;
	sh->error_len = 0;
	if (run(g, HATCH_HC_DONE, deadline_ms, res) != VMP_GUEST_OK) {
		mark_dead(g, res);
		return -1;
	}
	/* Everything the guest wrote is untrusted: bound it before use. */
	uint32_t status = sh->status;
	uint64_t out_len = sh->out_len;
	if (status == HATCH_STATUS_OK) {
		if (out_len > HATCH_BUF_SIZE) {
			res->outcome = VMP_GUEST_PROTOCOL;
			snprintf(res->message, sizeof(res->message),
				 "guest returned %llu bytes, more than its %llu-byte buffer",
				 (unsigned long long)out_len, HATCH_BUF_SIZE);
			g->dead = true;
			return -1;
		}
		res->out = rt_gpa(g, HATCH_OUT_BUF);
		res->out_len = out_len;
		return 0;
	}
	uint32_t el = sh->error_len < HATCH_ERROR_MAX ? sh->error_len : HATCH_ERROR_MAX - 1;
	if (status == HATCH_STATUS_NO_FUNCTION) {
		res->outcome = VMP_GUEST_NO_FUNCTION;
		snprintf(res->message, sizeof(res->message), "the guest has no function %u", fn_index);
		return -1;
	}
	res->outcome = VMP_GUEST_ERROR;
	snprintf(res->message, sizeof(res->message), "%.*s", (int)el,
		 el ? sh->error : "the guest function failed");
	return -1;
}

int vmp_guest_call(struct vmp_guest *g, const char *name, const void *in,
		   size_t in_len, uint32_t deadline_ms, struct vmp_guest_result *res)
{
	result_init(res);
	if (!g->ready || g->dead) {
		res->outcome = VMP_GUEST_HOST_ERROR;
		snprintf(res->message, sizeof(res->message), "the guest is %s",
			 g->dead ? "dead (an earlier call ended it)" : "not loaded");
		return -1;
	}
	if (in_len > HATCH_BUF_SIZE) {
		res->outcome = VMP_GUEST_ERROR;
		snprintf(res->message, sizeof(res->message), "payload of %zu bytes, at most %llu",
			 in_len, HATCH_BUF_SIZE);
		return -1;
	}
	for (unsigned i = 0; i < g->n_fn; i++)
		if (strcmp(g->fn[i], name) == 0)
			return request(g, HATCH_OP_CALL, i, in, in_len, deadline_ms, res);
	res->outcome = VMP_GUEST_NO_FUNCTION;
	snprintf(res->message, sizeof(res->message), "the guest has no function \"%s\"", name);
	return -1;
}

int vmp_guest_heartbeat(struct vmp_guest *g, uint32_t deadline_ms,
			struct vmp_guest_result *res)
{
	result_init(res);
	if (!g->ready || g->dead) {
		res->outcome = VMP_GUEST_HOST_ERROR;
		snprintf(res->message, sizeof(res->message), "the guest is not alive");
		return -1;
	}
	return request(g, HATCH_OP_HEARTBEAT, 0, NULL, 0, deadline_ms, res);
}

int vmp_guest_run_code(struct vmp_guest *g, const void *code, size_t len,
		       uint32_t deadline_ms, struct vmp_guest_result *res)
{
	result_init(res);
	struct hatch_err err = { 0 };
	if (len > PAGE) {
		res->outcome = VMP_GUEST_HOST_ERROR;
		snprintf(res->message, sizeof(res->message), "code longer than a page");
		return -1;
	}
	if (!g->shared || g->ready) {
		/* First run on this VM: the runtime and a one-page window. Page
		 * tables are written once: KVM shadows them, and a host write
		 * through our mapping would not be seen by the shadow. */
		struct vmp_vm *vm = g->vm;
		if (setup(vm, g, &err) < 0) {
			res->outcome = VMP_GUEST_HOST_ERROR;
			snprintf(res->message, sizeof(res->message), "%s", err.msg);
			return -1;
		}
		vmp_rt_write_page_tables(g, NULL, true);
	}
	uint8_t *page = rt_gpa(g, HATCH_IMAGE_BASE);
	/* Running off the end meets UD2s. */
	for (size_t i = 0; i < PAGE; i += 2) {
		page[i] = 0x0f;
		page[i + 1] = 0x0b;
	}
	memcpy(page, code, len);
	if (vmp_rt_reset_vcpu(g, HATCH_IMAGE_BASE, &err) < 0) {
		res->outcome = VMP_GUEST_HOST_ERROR;
		snprintf(res->message, sizeof(res->message), "%s", err.msg);
		return -1;
	}
	/* Any hypercall ends a run: 0 is no hypercall number. */
	return run(g, 0, deadline_ms, res) == VMP_GUEST_OK ? 0 : -1;
}

/* ---- the runtime section of a snapshot ----------------------------------- */

/* Layout, little-endian: u32 magic "HRT1", u32 version 1, u64 heap_end,
 * u32 n_fn, u32 zero, then n_fn names of HATCH_FN_NAME_MAX bytes each. */
size_t vmp_guest_runtime_save(const struct vmp_guest *g, uint8_t buf[VMP_GUEST_RT_MAX])
{
	uint32_t hdr32[2] = { VMP_GUEST_RT_MAGIC, 1 };
	uint32_t n[2] = { g->n_fn, 0 };
	memcpy(buf, hdr32, 8);
	memcpy(buf + 8, &g->heap_end, 8);
	memcpy(buf + 16, n, 8);
	memcpy(buf + VMP_GUEST_RT_HDR, g->fn, (size_t)g->n_fn * HATCH_FN_NAME_MAX);
	return VMP_GUEST_RT_HDR + (size_t)g->n_fn * HATCH_FN_NAME_MAX;
}

int vmp_guest_runtime_restore(struct vmp_vm *vm, const void *buf_, size_t len,
			      struct vmp_guest *g, struct hatch_err *err)
{
	const uint8_t *buf = buf_;
	const int EINV = E(INVALID_ARGUMENT);
	struct hatch_err e2 = { 0 };
	if (setup_fields(vm, g, &e2) < 0)
		return hatch_err_set(err, e2.code, 0, "%s", e2.msg);
	uint32_t hdr32[2], n[2];
	uint64_t heap_end;
	if (len < VMP_GUEST_RT_HDR)
		return hatch_err_set(err, EINV, 0, "runtime section: %zu bytes, shorter than its header", len);
	memcpy(hdr32, buf, 8);
	memcpy(&heap_end, buf + 8, 8);
	memcpy(n, buf + 16, 8);
	if (hdr32[0] != VMP_GUEST_RT_MAGIC || hdr32[1] != 1)
		return hatch_err_set(err, EINV, 0, "runtime section: bad magic or version %u", hdr32[1]);
	if (n[0] > HATCH_FN_MAX || n[1] != 0 ||
	    len != VMP_GUEST_RT_HDR + (size_t)n[0] * HATCH_FN_NAME_MAX)
		return hatch_err_set(err, EINV, 0, "runtime section: %u functions in %zu bytes", n[0], len);
	if (heap_end != g->heap_end)
		return hatch_err_set(err, EINV, 0, "runtime section: heap end %#llx, this VM's is %#llx",
				     (unsigned long long)heap_end, (unsigned long long)g->heap_end);
	if (g->shared->magic != HATCH_SHARED_MAGIC || g->shared->abi_version != HATCH_ABI_VERSION)
		return hatch_err_set(err, EINV, 0, "restored memory holds no hatchery shared page (ABI %u)",
				     HATCH_ABI_VERSION);
	/* The restored RAM is a copy another VM may also hold: a new
	 * generation and new seed bytes before the guest runs again. */
	if (set_generation(g, g->shared->generation + 1, err) < 0)
		return -1;
	memcpy(g->fn, buf + VMP_GUEST_RT_HDR, (size_t)n[0] * HATCH_FN_NAME_MAX);
	for (uint32_t i = 0; i < n[0]; i++)
		g->fn[i][HATCH_FN_NAME_MAX - 1] = '\0'; /* untrusted */
	g->n_fn = n[0];
	g->ready = true;
	return 0;
}
