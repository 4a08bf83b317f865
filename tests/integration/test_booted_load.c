/* The booted suite, part two: Load of a client's guest into an empty VM
 * through a real hatcheryd, and every way a Load can be wrong (no fd, two
 * fds, a pipe, not an ELF, a second Load). Same suite as test_booted.c
 * ("booted"), same checks at the end of each test.
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
#include <sys/stat.h>
#include <unistd.h>

#include "booted_tests.h"
#include "harness.h"
#include "hatchery/ipc.h"

/* ---- 8: Load into an empty VM -------------------------------------------------------- */

static int tmpfile_with(struct harness *h, const void *data, size_t len)
{
	char path[160];
	snprintf(path, sizeof(path), "%s/load.XXXXXX", h->dir);
	int fd = mkostemp(path, O_CLOEXEC);
	cr_assert_geq(fd, 0, "mkostemp: %s", strerror(errno));
	unlink(path);
	cr_assert_eq(write(fd, data, len), (ssize_t)len);
	return fd;
}

static void *read_default_guest(size_t *len)
{
	int fd = open(HATCH_DEFAULT_GUEST, O_RDONLY | O_CLOEXEC);
	cr_assert_geq(fd, 0, "open %s: %s", HATCH_DEFAULT_GUEST, strerror(errno));
	struct stat st;
	cr_assert_eq(fstat(fd, &st), 0);
	*len = (size_t)st.st_size;
	void *b = malloc(*len);
	cr_assert_not_null(b);
	cr_assert_eq(read(fd, b, *len), (ssize_t)*len);
	close(fd);
	return b;
}

static void ping_ok(int vm, const char *what)
{
	struct hatch_err err = { 0 };
	cr_assert_eq(hatch_vm_ping(vm, &err), 0, "%s: VM ping: %s (%s)", what, err.msg,
		     hatch_err_code_name(err.code));
}

Test(booted, load_into_an_empty_vm)
{
	struct harness *h = h_start(EMPTY("e", "min_idle = 1\nmax = 3")
				    BOOTED("b", "min_idle = 1\nmax = 2"));
	pid_t pid;
	int vm = acquire_vm(h, "e", &pid);
	int nfds0 = h_fd_count(pid);
	cr_assert_gt(nfds0, 0, "count the fds of child %d", pid);

	/* No guest yet. */
	Hatchery__V1__VmReply *rep = raw_call(vm, 1, "echo", "x", 1, 0, "call before Load");
	hatch_free(expect_error(rep, 1, E(FAILED_PRECONDITION), "call before Load"));

	/* Load carries exactly one fd. */
	rep = raw_load(vm, 2, NULL, 0, "Load without an fd");
	hatch_free(expect_error(rep, 2, E(UNEXPECTED_FDS), "Load without an fd"));
	int guest = open(HATCH_DEFAULT_GUEST, O_RDONLY | O_CLOEXEC);
	cr_assert_geq(guest, 0, "open %s: %s", HATCH_DEFAULT_GUEST, strerror(errno));
	int two[2] = { guest, guest };
	rep = raw_load(vm, 3, two, 2, "Load with two fds");
	hatch_free(expect_error(rep, 3, E(UNEXPECTED_FDS), "Load with two fds"));
	/* ... and no other request carries any. */
	Hatchery__V1__VmRequest preq = HATCHERY__V1__VM_REQUEST__INIT;
	Hatchery__V1__VmPingRequest pbody = HATCHERY__V1__VM_PING_REQUEST__INIT;
	preq.id = 4;
	preq.body_case = HATCHERY__V1__VM_REQUEST__BODY_PING;
	preq.ping = &pbody;
	rep = vm_rpc(vm, &preq, &guest, 1, "Ping with an fd");
	/* It decoded: the error carries its id (docs/protocol.md). */
	hatch_free(expect_error(rep, 4, E(UNEXPECTED_FDS), "Ping with an fd"));
	/* More fds than a packet may carry: discarded before it is decoded,
	 * so id 0; the VM serves on (the requests below are answered). */
	int five[5] = { guest, guest, guest, guest, guest };
	rep = vm_rpc(vm, &preq, five, 5, "Ping with five fds");
	hatch_free(expect_error(rep, 0, E(UNEXPECTED_FDS), "Ping with five fds"));

	/* Not an ELF, an empty file, a pipe: refused, the VM stays empty. */
	uint8_t junk[4096];
	fill_random(junk, sizeof(junk));
	int bad = tmpfile_with(h, junk, sizeof(junk));
	rep = raw_load(vm, 5, &bad, 1, "Load of random bytes");
	expect_error(rep, 5, E(INVALID_ARGUMENT), "Load of random bytes");
	cr_assert_not_null(strstr(rep->error->message, "ELF"), "unclear: \"%s\"",
			   rep->error->message);
	hatch_free(rep);
	close(bad);
	int empty = tmpfile_with(h, "", 0);
	rep = raw_load(vm, 6, &empty, 1, "Load of an empty file");
	hatch_free(expect_error(rep, 6, E(INVALID_ARGUMENT), "Load of an empty file"));
	close(empty);
	int pfd[2];
	cr_assert_eq(pipe2(pfd, O_CLOEXEC), 0);
	rep = raw_load(vm, 7, &pfd[0], 1, "Load of a pipe");
	hatch_free(expect_error(rep, 7, E(INVALID_ARGUMENT), "Load of a pipe"));
	close(pfd[0]);
	close(pfd[1]);
	ping_ok(vm, "after the refused Loads");
	/* Every fd it was sent is closed again. */
	int nfds1 = h_fd_count(pid);
	cr_assert_eq(nfds1, nfds0, "child %d holds %d fds after the refused Loads, %d before",
		     pid, nfds1, nfds0);
	rep = raw_call(vm, 8, "echo", "x", 1, 0, "call after refused Loads");
	hatch_free(expect_error(rep, 8, E(FAILED_PRECONDITION), "call after refused Loads"));

	/* The real thing, through the client library. */
	Hatchery__V1__VmLoadReply *lr = NULL;
	struct hatch_err lerr = { 0 };
	cr_assert_eq(hatch_vm_load(vm, guest, &lr, &lerr), 0, "hatch_vm_load: %s (%s)",
		     lerr.msg, hatch_err_code_name(lerr.code));
	cr_assert_eq(lr->n_functions, N_DEFAULT_FNS, "Load lists %zu functions",
		     lr->n_functions);
	for (size_t i = 0; i < N_DEFAULT_FNS; i++) {
		bool found = false;
		for (size_t j = 0; j < lr->n_functions; j++)
			found |= strcmp(lr->functions[j], default_fns[i]) == 0;
		cr_assert(found, "Load's function list lacks %s", default_fns[i]);
	}
	cr_assert_gt(lr->boot_ns, 0);
	hatch_free(lr);
	echo_ok(vm, 5000, "echo after Load");
	/* The ELF stays mapped; its fd is closed. */
	cr_assert_eq(h_fd_count(pid), nfds0, "child %d holds %d fds after Load, %d before", pid,
		     h_fd_count(pid), nfds0);
	/* Once. */
	rep = raw_load(vm, 10, &guest, 1, "a second Load");
	hatch_free(expect_error(rep, 10, E(FAILED_PRECONDITION), "a second Load"));
	echo_ok(vm, 1, "echo after a second Load");
	struct hatch_err err = { 0 };
	cr_assert_eq(hatch_vm_release(vm, &err), 0, "release: %s", err.msg);
	expect_replaced(h, "e", pid, "released loaded VM");

	/* A booted pool's VM has its guest already. */
	int bvm = acquire_vm(h, "b", NULL);
	rep = raw_load(bvm, 11, &guest, 1, "Load into a booted VM");
	hatch_free(expect_error(rep, 11, E(FAILED_PRECONDITION), "Load into a booted VM"));
	echo_ok(bvm, 1, "booted VM after a refused Load");
	close(bvm);

	/* A guest that parses but cannot boot (ud2 at its entry point) takes
	 * the VM with it. */
	size_t len;
	uint8_t *elf = read_default_guest(&len);
	const Elf64_Ehdr *eh = (const Elf64_Ehdr *)elf;
	const Elf64_Phdr *ph = (const Elf64_Phdr *)(elf + eh->e_phoff);
	bool patched = false;
	for (unsigned i = 0; i < eh->e_phnum; i++) {
		if (ph[i].p_type != PT_LOAD || eh->e_entry < ph[i].p_vaddr ||
		    eh->e_entry + 2 > ph[i].p_vaddr + ph[i].p_filesz)
			continue;
		uint8_t *at = elf + ph[i].p_offset + (eh->e_entry - ph[i].p_vaddr);
		at[0] = 0x0f;
		at[1] = 0x0b;
		patched = true;
	}
	cr_assert(patched, "no segment holds the entry point");
	int ud = tmpfile_with(h, elf, len);
	free(elf);
	pid_t upid;
	int uvm = acquire_vm(h, "e", &upid);
	rep = raw_load(uvm, 12, &ud, 1, "Load of a guest that faults at start");
	expect_error(rep, 12, E(GUEST_FAULT), "Load of a guest that faults at start");
	cr_assert_not_null(strstr(rep->error->message, "#UD"), "\"%s\"", rep->error->message);
	hatch_free(rep);
	close(ud);
	expect_eof(uvm, "after a failed boot");
	close(uvm);
	expect_replaced(h, "e", upid, "VM whose guest did not boot");
	close(guest);
	h_finish(h);
}

