/* Random bytes as guest code: thousands of runs in one VM (the runtime's
 * tables are written once; each run resets the vCPU), each of which must
 * end as a fault, a deadline, a refused port or a malformed hypercall,
 * never as a crash or hang of the host process or a KVM error. Needs
 * /dev/kvm; skipped loudly otherwise. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "runtime/runtime.h"
#include "testing.h"

#define RUNS 5000
#define DEADLINE_MS 5

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint64_t next(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

Test(guest_fuzz, random_code_only_faults_or_times_out, .timeout = 280)
{
	struct vmp_kvm_host host;
	struct hatch_err err = { 0 };
	if (vmp_kvm_host_open(&host, "/dev/kvm", &err) < 0)
		t_skip("this test needs /dev/kvm: %s", err.msg);
	cr_assert_eq(vmp_guest_deadline_init(&err), 0, "%s", err.msg);
	struct vmp_vm vm;
	cr_assert_eq(vmp_vm_create(&host, 32u << 20, 1, &vm, &err), 0, "%s", err.msg);
	struct vmp_guest g;
	memset(&g, 0, sizeof(g));
	g.vm = &vm;

	unsigned count[VMP_GUEST_HOST_ERROR + 1] = { 0 };
	unsigned vectors[32] = { 0 };
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (int i = 0; i < RUNS; i++) {
		uint8_t code[64];
		size_t len = 1 + next() % (sizeof(code) - 2);
		for (size_t k = 0; k < len; k++)
			code[k] = (uint8_t)next();
		/* Every fourth run loops back to its start if it falls through,
		 * so that the deadline path is taken too. */
		if (i % 4 == 0) {
			code[len] = 0xeb;
			code[len + 1] = (uint8_t)(-(int)(len + 2));
			len += 2;
		}
		struct vmp_guest_result res;
		vmp_guest_run_code(&g, code, len, DEADLINE_MS, &res);
		cr_assert(res.outcome != VMP_GUEST_HOST_ERROR && res.outcome != VMP_GUEST_TRIPLE_FAULT,
			  "run %d: %s: %s", i, vmp_guest_outcome_name(res.outcome), res.message);
		count[res.outcome]++;
		if (res.outcome == VMP_GUEST_FAULT && res.fault.vector < 32)
			vectors[res.fault.vector]++;
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double s = (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
	cr_log_info("%d runs in %.1f s: fault %u, deadline %u, bad I/O %u, protocol %u, ok %u",
		    RUNS, s, count[VMP_GUEST_FAULT], count[VMP_GUEST_DEADLINE],
		    count[VMP_GUEST_BAD_IO], count[VMP_GUEST_PROTOCOL], count[VMP_GUEST_OK]);
	cr_log_info("fault vectors: #DE %u #BP %u #UD %u #GP %u #PF %u #AC %u other %u", vectors[0],
		    vectors[3], vectors[6], vectors[13], vectors[14], vectors[17],
		    count[VMP_GUEST_FAULT] - vectors[0] - vectors[3] - vectors[6] - vectors[13] -
			    vectors[14] - vectors[17]);
	/* The VM still works after all that. */
	static const uint8_t out_done[] = { 0xb0, 0x00, 0xe6, HATCH_HC_PORT }; /* mov $0,%al; out */
	struct vmp_guest_result res;
	cr_assert_eq(vmp_guest_run_code(&g, out_done, sizeof(out_done), 100, &res), 0, "%s", res.message);
	vmp_vm_destroy(&vm);
	vmp_kvm_host_close(&host);
}
