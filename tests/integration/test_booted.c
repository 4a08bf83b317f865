/* Booted pools through a real hatcheryd (jailed): guest function calls on
 * freshly leased VMs, every way the default guest can misbehave, health
 * checks and Info (Load into an empty VM: test_booted_load.c). The guest runtime itself is tested
 * in process by test_guest; here the point is the whole path: the client
 * library or the raw VM protocol, the jailed child, its exit and the
 * supervisor's refill. Each test ends with h_finish (pools back at steady
 * state, no fd leak, no zombie, exit 0 on SIGTERM).
 *
 * Without /dev/kvm every test is reported as skipped, never as passed. */
#include <criterion/criterion.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "booted_tests.h"
#include "harness.h"
#include "hatchery/ipc.h"
#include "sha256_ref.h"

#ifndef HATCH_DEFAULT_GUEST
#error "HATCH_DEFAULT_GUEST must name the default guest ELF (build/guest/default.elf)"
#endif


TestSuite(booted, .fini = h_teardown, .timeout = 60);

/* ---- 1: echo, byte-exact, up to the packet's limits ----------------------- */

Test(booted, echo_is_byte_exact_up_to_the_packet_limit)
{
	struct harness *h = h_start(BOOTED("b", "min_idle = 1\nmax = 2"));
	pid_t pid;
	int vm = acquire_vm(h, "b", &pid);
	/* The largest echo is RESULT_MAX (57,344) bytes, not ~60,000. */
	const size_t sizes[] = { 0, 1, 4096, RESULT_MAX };
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
		echo_ok(vm, sizes[i], "echo");

	/* One byte more than a result may be (and 60,000): the function ran,
	 * its result does not fit in a reply. GUEST_ERROR, the VM lives on. */
	struct hatch_err err;
	uint8_t *big = calloc(1, IPC_MAX_MSG + 1);
	cr_assert_not_null(big);
	const size_t too_big[] = { RESULT_MAX + 1, 60000 };
	for (size_t i = 0; i < 2; i++) {
		call_fails(vm, "echo", big, too_big[i], 0, E(GUEST_ERROR), &err,
			   "echo, result too big");
		cr_assert_not_null(strstr(err.msg, "does not fit in one reply packet"),
				   "echo of %zu bytes: unclear message \"%s\"", too_big[i], err.msg);
		echo_ok(vm, 100, "echo after a result that did not fit");
	}

	/* The request side: the largest payload whose VmRequest is exactly
	 * one 64 KiB packet is accepted (sha256 of it, checked on the host);
	 * one byte more is MESSAGE_TOO_LARGE (id 0) and the VM serves on. */
	Hatchery__V1__VmRequest req = HATCHERY__V1__VM_REQUEST__INIT;
	Hatchery__V1__VmCallRequest body = HATCHERY__V1__VM_CALL_REQUEST__INIT;
	body.function = (char *)"sha256";
	body.payload.data = big;
	req.id = 7;
	req.body_case = HATCHERY__V1__VM_REQUEST__BODY_CALL;
	req.call = &body;
	size_t max = IPC_MAX_MSG;
	for (body.payload.len = max;
	     protobuf_c_message_get_packed_size(&req.base) > IPC_MAX_MSG;)
		body.payload.len--;
	max = body.payload.len;
	cr_assert_eq(protobuf_c_message_get_packed_size(&req.base), IPC_MAX_MSG,
		     "a payload of %zu bytes should make a packet of exactly 64 KiB", max);
	fill_random(big, max + 1);
	Hatchery__V1__VmReply *rep = raw_call(vm, 7, "sha256", big, max, 0, "largest request");
	cr_assert_null(rep->error, "sha256 of %zu bytes (a 64 KiB packet): %s", max,
		       rep->error ? rep->error->message : "");
	cr_assert_eq(rep->body_case, HATCHERY__V1__VM_REPLY__BODY_CALL);
	uint8_t want[32];
	sha256_ref(big, max, want);
	cr_assert_eq(rep->call->result.len, 32);
	cr_assert_arr_eq(rep->call->result.data, want, 32, "sha256 of the largest request");
	hatch_free(rep);

	rep = raw_call(vm, 8, "sha256", big, max + 1, 0, "request one byte too big");
	expect_error(rep, 0, E(MESSAGE_TOO_LARGE), "a 64 KiB + 1 packet");
	hatch_free(rep);
	/* The client library refuses to send it at all (same function name,
	 * so the same packet size). */
	Hatchery__V1__VmCallReply *cr = NULL;
	err = (struct hatch_err){ 0 };
	cr_assert_eq(hatch_vm_call(vm, "sha256", big, max + 1, 0, &cr, &err), -1,
		     "hatch_vm_call sent a payload that does not fit in a packet");
	cr_assert_eq(err.code, E(INVALID_ARGUMENT),
		     "an oversized request is the caller's mistake, not an outage: %s (%s)",
		     hatch_err_code_name(err.code), err.msg);
	echo_ok(vm, 4096, "echo after an oversized request");
	cr_assert_eq(kill(pid, 0), 0, "child %d died serving oversized requests", pid);
	free(big);

	struct hatch_err rerr = { 0 };
	cr_assert_eq(hatch_vm_release(vm, &rerr), 0, "release: %s", rerr.msg);
	cr_assert(h_wait_pid_gone(pid, H_WAIT_MS), "released child %d still exists", pid);
	struct h_stats s = h_stats(h, "b");
	cr_assert_eq(s.unexpected_exits, 0);
	h_finish(h);
}

/* ---- 2: sha256 against the host's -------------------------------------------- */

Test(booted, sha256_matches_the_host)
{
	struct harness *h = h_start(BOOTED("b", "min_idle = 1\nmax = 2"));
	int vm = acquire_vm(h, "b", NULL);
	/* Padding edges (55/56/64), several blocks, and a big one. */
	const size_t sizes[] = { 0, 1, 3, 55, 56, 63, 64, 65, 119, 120, 1000, 4096, 40000, 65000 };
	uint8_t *in = malloc(65000);
	cr_assert_not_null(in);
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		fill_random(in, sizes[i]);
		Hatchery__V1__VmCallReply *rep = call_ok(vm, "sha256", in, sizes[i], "sha256");
		uint8_t want[32];
		sha256_ref(in, sizes[i], want);
		cr_assert_eq(rep->result.len, 32, "sha256 of %zu bytes: %zu-byte result", sizes[i],
			     rep->result.len);
		cr_assert_arr_eq(rep->result.data, want, 32,
				 "sha256 of %zu random bytes differs from the host's", sizes[i]);
		hatch_free(rep);
	}
	free(in);
	/* "abc", FIPS 180-2 appendix B.1: the host reference is right too. */
	static const uint8_t abc[32] = {
		0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea, 0x41, 0x41, 0x40, 0xde, 0x5d, 0xae, 0x22, 0x23,
		0xb0, 0x03, 0x61, 0xa3, 0x96, 0x17, 0x7a, 0x9c, 0xb4, 0x10, 0xff, 0x61, 0xf2, 0x00, 0x15, 0xad,
	};
	Hatchery__V1__VmCallReply *rep = call_ok(vm, "sha256", "abc", 3, "sha256 abc");
	cr_assert_eq(rep->result.len, 32);
	cr_assert_arr_eq(rep->result.data, abc, 32, "sha256(\"abc\")");
	hatch_free(rep);
	close(vm);
	h_finish(h);
}

/* ---- 3: a page fault ends the VM, and only that VM ------------------------- */

Test(booted, fault_reports_the_page_fault_and_the_vm_is_replaced)
{
	struct harness *h = h_start(BOOTED("b", "min_idle = 2\nmax = 4"));
	struct sym_range fn = guest_symbol("hatch_fn_fault");
	pid_t pid, other_pid;
	int vm = acquire_vm(h, "b", &pid);
	int other = acquire_vm(h, "b", &other_pid);
	echo_ok(vm, 10, "before the fault");

	/* The default guest's `fault` with no payload reads address 0. */
	Hatchery__V1__VmReply *rep = raw_call(vm, 3, "fault", NULL, 0, 0, "fault");
	expect_error(rep, 3, E(GUEST_FAULT), "fault");
	const Hatchery__V1__GuestFault *gf = rep->error->guest_fault;
	cr_assert_not_null(gf, "GUEST_FAULT without guest_fault: \"%s\"", rep->error->message);
	cr_assert_eq(gf->vector, 14, "vector %u, expected 14 (#PF): %s", gf->vector,
		     rep->error->message);
	cr_assert_eq(gf->address, 0, "faulting address %#llx, expected 0 (the NULL read)",
		     (unsigned long long)gf->address);
	cr_assert_eq(gf->error_code & 7, 4, "error code %#llx: expected a user-mode read of a "
		     "page not present", (unsigned long long)gf->error_code);
	cr_assert(gf->rip >= fn.lo && gf->rip < fn.hi,
		  "rip %#llx is not inside the guest's fault function [%#llx, %#llx)",
		  (unsigned long long)gf->rip, (unsigned long long)fn.lo,
		  (unsigned long long)fn.hi);
	char rip[32];
	snprintf(rip, sizeof(rip), "rip %#llx", (unsigned long long)gf->rip);
	cr_assert(strstr(rep->error->message, "#PF") && strstr(rep->error->message, rip),
		  "the message should name the #PF and %s: \"%s\"", rip, rep->error->message);
	hatch_free(rep);

	/* The reply was the last message: the child exits, a new one comes. */
	expect_eof(vm, "after GUEST_FAULT");
	close(vm);
	expect_replaced(h, "b", pid, "faulted VM");

	/* The other lease never noticed. */
	cr_assert_eq(kill(other_pid, 0), 0, "the other leased child %d died", other_pid);
	echo_ok(other, 1000, "the other VM after its sibling faulted");
	pid_t leased[4];
	cr_assert_eq(h_child_pids(h, "b", "leased", leased, 4), 1);
	cr_assert_eq(leased[0], other_pid);
	struct hatch_err err = { 0 };
	cr_assert_eq(hatch_vm_release(other, &err), 0, "release: %s", err.msg);
	h_finish(h);
}

/* ---- 4: a guest that never returns ----------------------------------------- */

Test(booted, spin_hits_its_deadline_and_the_vm_is_replaced)
{
	struct harness *h = h_start(BOOTED("b", "min_idle = 1\nmax = 2"));
	pid_t pid;
	int vm = acquire_vm(h, "b", &pid);
	struct hatch_err err;
	uint64_t t0 = h_now_ms();
	call_fails(vm, "spin", NULL, 0, 100, E(DEADLINE_EXCEEDED), &err, "spin");
	uint64_t dt = h_now_ms() - t0;
	cr_assert_geq(dt, 100, "DEADLINE_EXCEEDED after %llu ms, before the 100 ms deadline",
		      (unsigned long long)dt);
	cr_assert_leq(dt, 600, "DEADLINE_EXCEEDED after %llu ms for a 100 ms deadline",
		      (unsigned long long)dt);
	cr_assert_not_null(strstr(err.msg, "100 ms"), "message: \"%s\"", err.msg);
	expect_eof(vm, "after DEADLINE_EXCEEDED");
	close(vm);
	expect_replaced(h, "b", pid, "spun VM");
	h_finish(h);
}

/* ---- 5: I/O ports and MMIO ------------------------------------------------------ */

Test(booted, ports_and_mmio_are_refused_and_the_vm_is_replaced)
{
	struct harness *h = h_start(BOOTED("b", "min_idle = 1\nmax = 2"));
	struct sym_range fn = guest_symbol("hatch_fn_ports");
	static const struct {
		const char *arg, *says;
	} k[] = {
		{ "", "I/O port it may not" },   /* outb to 0x80 */
		{ "in", "I/O port it may not" }, /* inb from 0x64 */
		{ "mmio", "#PF" },               /* the LAPIC: nothing but RAM is mapped */
	};
	for (size_t i = 0; i < sizeof(k) / sizeof(k[0]); i++) {
		char what[64];
		snprintf(what, sizeof(what), "ports \"%s\"", k[i].arg);
		pid_t pid;
		int vm = acquire_vm(h, "b", &pid);
		Hatchery__V1__VmReply *rep =
			raw_call(vm, 5, "ports", k[i].arg, strlen(k[i].arg), 0, what);
		expect_error(rep, 5, E(GUEST_FAULT), what);
		cr_assert_not_null(strstr(rep->error->message, k[i].says), "%s: \"%s\"", what,
				   rep->error->message);
		const Hatchery__V1__GuestFault *gf = rep->error->guest_fault;
		if (strcmp(k[i].arg, "mmio") == 0) {
			cr_assert_not_null(gf, "%s: no guest_fault", what);
			cr_assert_eq(gf->vector, 14);
			cr_assert_eq(gf->address, 0xfee00000ull, "%s: address %#llx", what,
				     (unsigned long long)gf->address);
			cr_assert(gf->rip >= fn.lo && gf->rip < fn.hi, "%s: rip %#llx", what,
				  (unsigned long long)gf->rip);
		}
		hatch_free(rep);
		expect_eof(vm, what);
		close(vm);
		expect_replaced(h, "b", pid, what);
	}
	h_finish(h);
}

/* ---- 6: the heap ------------------------------------------------------------------- */

Test(booted, alloc_within_memory_works_beyond_it_is_a_guest_error)
{
	struct harness *h = h_start(BOOTED("b", "min_idle = 1\nmax = 2"));
	pid_t pid;
	int vm = acquire_vm(h, "b", &pid);
	Hatchery__V1__VmCallReply *rep = call_ok(vm, "alloc", "4", 1, "alloc 4 MiB");
	cr_assert_eq(rep->result.len, strlen("touched 4 MiB"));
	cr_assert_arr_eq(rep->result.data, "touched 4 MiB", rep->result.len);
	hatch_free(rep);
	/* All of it: the 8 MiB heap of a 32 MiB VM. */
	rep = call_ok(vm, "alloc", "8", 1, "alloc the whole heap");
	cr_assert_arr_eq(rep->result.data, "touched 8 MiB", strlen("touched 8 MiB"));
	hatch_free(rep);

	struct hatch_err err;
	const char *too_much[] = { "9", "64", "100000" };
	for (size_t i = 0; i < 3; i++) {
		call_fails(vm, "alloc", too_much[i], strlen(too_much[i]), 0, E(GUEST_ERROR), &err,
			   "alloc beyond memory");
		cr_assert_not_null(strstr(err.msg, "out of memory"), "alloc %s MiB: \"%s\"",
				   too_much[i], err.msg);
		cr_assert_not_null(strstr(err.msg, "the heap has 8 MiB"), "alloc %s MiB: \"%s\"",
				   too_much[i], err.msg);
	}
	/* GUEST_ERROR leaves the VM usable, its heap too. */
	echo_ok(vm, 64, "echo after out of memory");
	rep = call_ok(vm, "alloc", "8", 1, "alloc after out of memory");
	hatch_free(rep);
	cr_assert_eq(kill(pid, 0), 0, "child %d died of a GUEST_ERROR", pid);
	close(vm);
	h_finish(h);
}

/* ---- 7: an unknown function --------------------------------------------------------- */

Test(booted, unknown_function_is_not_found_and_the_vm_lives_on)
{
	struct harness *h = h_start(BOOTED("b", "min_idle = 1\nmax = 2"));
	pid_t pid;
	int vm = acquire_vm(h, "b", &pid);
	struct hatch_err err;
	const char *names[] = { "no_such_function", "", "ECHO", "echo2" };
	for (size_t i = 0; i < 4; i++) {
		call_fails(vm, names[i], "x", 1, 0, E(NOT_FOUND), &err, "unknown function");
		char quoted[64];
		snprintf(quoted, sizeof(quoted), "\"%s\"", names[i]);
		cr_assert_not_null(strstr(err.msg, quoted), "the message does not name %s: \"%s\"",
				   quoted, err.msg);
		echo_ok(vm, 32, "echo after NOT_FOUND");
	}
	cr_assert_eq(kill(pid, 0), 0, "child %d died after NOT_FOUND", pid);
	struct hatch_err rerr = { 0 };
	cr_assert_eq(hatch_vm_release(vm, &rerr), 0, "release: %s", rerr.msg);
	cr_assert_eq(h_stats(h, "b").unexpected_exits, 0);
	h_finish(h);
}

/* ---- 9: health checks on booted children ------------------------------------------ */

Test(booted, health_checks_pass_through_the_guest)
{
	/* Intervals and the window scale with the slowdown: under the
	 * emulator a heartbeat alone may take longer than 45 ms. */
	unsigned interval = t_ms(50), timeout = t_ms(45);
	struct harness *h = h_start(BOOTED("b", "min_idle = 2\nmax = 3\n"
					      "health_interval_ms = %u\nhealth_timeout_ms = %u"),
				    interval, timeout);
	struct h_stats s0 = h_stats(h, "b");
	pid_t pids[4];
	cr_assert_eq(h_child_pids(h, "b", "ready", pids, 4), 2);
	long sw0[2] = { voluntary_switches(pids[0]), voluntary_switches(pids[1]) };

	/* Eight intervals. Each check wakes the idle child, which runs its
	 * guest's heartbeat (vmproc answers only if the guest does) and pongs. */
	uint64_t t0 = h_now_ms();
	usleep(8 * interval * 1000);
	uint64_t dt = h_now_ms() - t0;

	long sw1[2] = { voluntary_switches(pids[0]), voluntary_switches(pids[1]) };
	struct h_stats s1 = h_stats(h, "b");
	pid_t now[4];
	cr_assert_eq(h_child_pids(h, "b", "ready", now, 4), 2);
	for (int i = 0; i < 2; i++) {
		cr_assert(h_pid_in(pids[i], now, 2), "child %d was replaced during health checks",
			  pids[i]);
		/* At least half the checks that were due: the count proves the
		 * checks happened, not just that nothing failed. */
		long due = (long)(dt / interval) / 2;
		cr_assert_geq(sw1[i] - sw0[i], due,
			      "child %d woke %ld times in %llu ms: health checks every %u ms "
			      "should have woken it at least %ld times", pids[i], sw1[i] - sw0[i],
			      (unsigned long long)dt, interval, due);
	}
	cr_assert_eq(s1.health_failures, 0, "%llu health failures",
		     (unsigned long long)s1.health_failures);
	cr_assert_eq(s1.unexpected_exits, 0, "%llu unexpected exits (a failed heartbeat ends "
		     "the child)", (unsigned long long)s1.unexpected_exits);
	cr_assert_eq(s1.spawned, s0.spawned, "children were spawned during the health checks");

	/* The guests are still fine after all those heartbeats. */
	int vm = acquire_vm(h, "b", NULL);
	echo_ok(vm, 100, "echo after health checks");
	close(vm);
	h_finish(h);
}

/* ---- 10: Info --------------------------------------------------------------------------- */

Test(booted, info_lists_the_guest_functions)
{
	struct harness *h = h_start(BOOTED("b", "min_idle = 1\nmax = 2")
				    EMPTY("e", "min_idle = 1\nmax = 2"));
	pid_t pid;
	int vm = acquire_vm(h, "b", &pid);
	Hatchery__V1__VmInfoReply *vi = NULL;
	struct hatch_err err = { 0 };
	cr_assert_eq(hatch_vm_info(vm, &vi, &err), 0, "VM info: %s", err.msg);
	cr_assert_str_eq(vi->kind, "booted");
	cr_assert_str_eq(vi->pool, "b");
	cr_assert_eq(vi->pid, (uint32_t)pid);
	cr_assert_eq(vi->memory_mib, 32);
	cr_assert(vi->jailed, "the child is not jailed");
	cr_assert_eq(vi->n_guest_functions, N_DEFAULT_FNS, "Info lists %zu guest functions",
		     vi->n_guest_functions);
	for (size_t i = 0; i < N_DEFAULT_FNS; i++) {
		bool found = false;
		for (size_t j = 0; j < vi->n_guest_functions; j++)
			found |= strcmp(vi->guest_functions[j], default_fns[i]) == 0;
		cr_assert(found, "Info's guest_functions lacks %s", default_fns[i]);
	}
	cr_assert_gt(vi->guest_boot_ns, 0, "guest_boot_ns is 0");
	cr_assert_lt(vi->guest_boot_ns, 1000000000ull, "guest_boot_ns %llu: over the 1 s boot "
		     "deadline", (unsigned long long)vi->guest_boot_ns);
	cr_assert_lt(vi->guest_boot_ns, vi->ready_ns, "booting is part of the way to ready");
	hatch_free(vi);
	close(vm);

	/* An empty VM has none. */
	vm = acquire_vm(h, "e", NULL);
	cr_assert_eq(hatch_vm_info(vm, &vi, &err), 0, "VM info: %s", err.msg);
	cr_assert_str_eq(vi->kind, "empty");
	cr_assert_eq(vi->n_guest_functions, 0);
	cr_assert_eq(vi->guest_boot_ns, 0);
	hatch_free(vi);
	close(vm);
	h_finish(h);
}
