/* Linux guests through a real hatcheryd (jailed): a pool of kind = linux
 * boots Debian's kernel with hatchery's initramfs to its agent; a client
 * acquires a VM and runs programs and file operations in it, and every way
 * the guest can misbehave ends that VM alone with a clear error and a
 * replacement.
 *
 * Boots are expensive (seconds natively, ~20 s inside scripts/vm), so one
 * lease carries many checks: each Test boots what it needs and no more.
 * Labelled linux: scripts/test runs it natively only where the host's KVM
 * can boot a kernel (hatcheryd --probe-linux), otherwise in scripts/vm. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "booted_tests.h"
#include "harness.h"
#include "hatchery/ipc.h"
#include "sha256_ref.h"

#ifndef HATCH_DEFAULT_KERNEL
#error "HATCH_DEFAULT_KERNEL must name the kernel the build fetched"
#endif

/* A Linux pool: the build's kernel and initramfs are the defaults. The
 * boot deadline and health timeout allow for the emulator (scripts/vm). */
#define LINUX_POOL(name, body)                                                 \
	"[pool \"" name "\"]\nkind = linux\nmemory_mib = 256\nvcpus = 2\n"      \
	"seccomp = kill\n" body "\n"

TestSuite(linux_pool, .fini = h_teardown, .timeout = 600);

static struct harness *start(const char *extra)
{
	char cfg[1024];
	snprintf(cfg, sizeof(cfg),
		 LINUX_POOL("lx", "min_idle = 1\nmax = 2\nboot_timeout_ms = %u\n"
				  "health_interval_ms = %u\nhealth_timeout_ms = %u\n%s"),
		 t_ms(20000u), t_ms(2000u), t_ms(1000u), extra ? extra : "");
	return h_start("%s", cfg);
}

struct out {
	char buf[2][1 << 20];
	size_t len[2];
	unsigned pieces;
};

static void collect(void *ctx, int stream, const void *data, size_t len)
{
	struct out *o = ctx;
	int s = stream == HATCH_STDERR;
	size_t room = sizeof(o->buf[s]) - o->len[s];
	memcpy(o->buf[s] + o->len[s], data, len < room ? len : room);
	o->len[s] += len < room ? len : room;
	o->pieces++;
}

/* Run argv; fail the test unless the call succeeds. */
static Hatchery__V1__VmExecReply *run(int vm, struct out *o, const struct hatch_exec *x,
				      const char *what)
{
	memset(o->len, 0, sizeof(o->len));
	o->pieces = 0;
	Hatchery__V1__VmExecReply *rep = NULL;
	struct hatch_err err = { 0 };
	cr_assert_eq(hatch_vm_exec(vm, x, collect, o, &rep, &err), 0, "%s: %s", what, err.msg);
	return rep;
}

static Hatchery__V1__VmExecReply *sh(int vm, struct out *o, const char *script,
				     const char *what)
{
	const char *argv[] = { "sh", "-c", script };
	struct hatch_exec x = { .argv = argv, .argc = 3 };
	return run(vm, o, &x, what);
}

static void sh_ok(int vm, struct out *o, const char *script, const char *want_stdout)
{
	Hatchery__V1__VmExecReply *r = sh(vm, o, script, script);
	cr_assert_eq(r->exit_code, 0, "%s: exit %d, stderr \"%.*s\"", script, r->exit_code,
		     (int)o->len[1], o->buf[1]);
	if (want_stdout)
		cr_assert(o->len[0] == strlen(want_stdout) &&
			  memcmp(o->buf[0], want_stdout, o->len[0]) == 0,
			  "%s: stdout \"%.*s\", expected \"%s\"", script, (int)o->len[0],
			  o->buf[0], want_stdout);
	hatch_free(r);
}

static struct out o; /* 2 MiB: not on the stack */

/* The jail of a Linux child, as /proc shows it for every task: the main
 * thread and each vCPU thread run under the filter, with no capabilities
 * and no_new_privs, as an unprivileged uid. */
static void jail_holds_for_every_task(pid_t pid, unsigned want_tasks)
{
	char dir[64];
	snprintf(dir, sizeof(dir), "/proc/%d/task", pid);
	DIR *d = opendir(dir);
	cr_assert_not_null(d, "%s: %s", dir, strerror(errno));
	unsigned tasks = 0;
	for (struct dirent *e; (e = readdir(d));) {
		if (e->d_name[0] == '.')
			continue;
		char path[384];
		snprintf(path, sizeof(path), "%s/%s/status", dir, e->d_name);
		struct h_jail_status j = h_jail_status(path);
		cr_assert_eq(j.seccomp, 2, "task %s: Seccomp %d", e->d_name, j.seccomp);
		cr_assert_eq(j.no_new_privs, 1, "task %s: NoNewPrivs %d", e->d_name, j.no_new_privs);
		cr_assert_eq(j.cap_eff, 0, "task %s: CapEff %llx", e->d_name, j.cap_eff);
		cr_assert_neq(j.uid, 0, "task %s runs as root", e->d_name);
		tasks++;
	}
	closedir(d);
	cr_assert_eq(tasks, want_tasks, "%u tasks in the child, expected %u", tasks, want_tasks);
}

/* ---- 1: programs, on one lease -------------------------------------------- */

Test(linux_pool, exec_streams_statuses_env_cwd_stdin_timeout_limits)
{
	struct harness *h = start(NULL);
	pid_t pid;
	int vm = acquire_vm(h, "lx", &pid);

	Hatchery__V1__VmInfoReply *info = NULL;
	struct hatch_err err = { 0 };
	cr_assert_eq(hatch_vm_info(vm, &info, &err), 0, "%s", err.msg);
	cr_assert_str_eq(info->kind, "linux");
	cr_assert_not_null(strstr(info->kernel_release, "amd64"), "kernel_release \"%s\"",
			   info->kernel_release);
	cr_assert_eq(info->guest_nproc, 2, "the guest sees %u CPUs, the pool has 2",
		     info->guest_nproc);
	cr_assert_gt(info->linux_boot_ns, 0);
	cr_assert(info->jailed, "a linux child runs jailed");
	hatch_free(info);
	/* The main thread and one thread per vCPU. */
	jail_holds_for_every_task(pid, 3);

	/* true, false, a signal death. */
	const char *t[] = { "true" }, *f[] = { "false" };
	struct hatch_exec x = { .argv = t, .argc = 1 };
	Hatchery__V1__VmExecReply *r = run(vm, &o, &x, "true");
	cr_assert(r->exit_code == 0 && r->signal == 0 && !r->timed_out);
	hatch_free(r);
	x.argv = f;
	r = run(vm, &o, &x, "false");
	cr_assert_eq(r->exit_code, 1);
	hatch_free(r);
	r = sh(vm, &o, "kill -TERM $$", "signal");
	cr_assert_eq(r->signal, SIGTERM, "signal %d, exit %d", r->signal, r->exit_code);
	hatch_free(r);

	/* stdout and stderr apart and byte-exact, binary included. */
	r = sh(vm, &o, "uname -r; echo hi >&2; exit 3", "uname");
	cr_assert_eq(r->exit_code, 3);
	cr_assert(o.len[1] == 3 && memcmp(o.buf[1], "hi\n", 3) == 0, "stderr \"%.*s\"",
		  (int)o.len[1], o.buf[1]);
	cr_assert(o.len[0] > 5 && strstr(o.buf[0], "amd64"), "stdout \"%.*s\"", (int)o.len[0],
		  o.buf[0]);
	hatch_free(r);
	/* Every byte value, 256 times (64 KiB), on both streams. */
	r = sh(vm, &o, "i=0; while [ $i -lt 256 ]; do printf \"$(printf '\\\\%03o' $i)\"; "
		       "i=$((i+1)); done > /tmp/b; "
		       "for k in 1 2 3 4 5 6 7 8; do cat /tmp/b /tmp/b /tmp/b /tmp/b /tmp/b "
		       "/tmp/b /tmp/b /tmp/b /tmp/b /tmp/b /tmp/b /tmp/b /tmp/b /tmp/b /tmp/b "
		       "/tmp/b /tmp/b /tmp/b /tmp/b /tmp/b /tmp/b /tmp/b /tmp/b /tmp/b /tmp/b "
		       "/tmp/b /tmp/b /tmp/b /tmp/b /tmp/b /tmp/b /tmp/b; done | tee /dev/stderr",
	       "binary");
	cr_assert_eq(r->exit_code, 0);
	cr_assert_eq(o.len[0], 65536, "stdout %zu bytes", o.len[0]);
	cr_assert_eq(o.len[1], 65536, "stderr %zu bytes", o.len[1]);
	for (size_t i = 0; i < 65536; i++)
		cr_assert(o.buf[0][i] == (char)(i & 255) && o.buf[1][i] == (char)(i & 255),
			  "byte %zu differs", i);
	hatch_free(r);

	/* stdin, env, cwd. */
	const char *cat[] = { "cat" };
	x = (struct hatch_exec){ .argv = cat, .argc = 1, .stdin_data = "in\0put", .stdin_len = 6 };
	r = run(vm, &o, &x, "cat");
	cr_assert(o.len[0] == 6 && memcmp(o.buf[0], "in\0put", 6) == 0);
	hatch_free(r);
	const char *env[] = { "A=1", "PATH=/bin:/usr/bin" };
	const char *penv[] = { "sh", "-c", "echo $A:$HOME:$(pwd)" };
	x = (struct hatch_exec){ .argv = penv, .argc = 3, .env = env, .envc = 2, .cwd = "/proc" };
	r = run(vm, &o, &x, "env");
	cr_assert(o.len[0] == 9 && memcmp(o.buf[0], "1::/proc\n", 9) == 0, "stdout \"%.*s\"",
		  (int)o.len[0], o.buf[0]);
	hatch_free(r);
	x.cwd = "/nonexistent";
	cr_assert_eq(hatch_vm_exec(vm, &x, NULL, NULL, NULL, &err), -1);
	cr_assert_eq(err.code, E(AGENT_ERROR), "bad cwd: %s", err.msg);
	cr_assert_eq(err.sys_errno, ENOENT, "bad cwd: %s", err.msg);
	const char *nope[] = { "/no/such/program" };
	x = (struct hatch_exec){ .argv = nope, .argc = 1 };
	cr_assert_eq(hatch_vm_exec(vm, &x, NULL, NULL, NULL, &err), -1);
	cr_assert_eq(err.code, E(AGENT_ERROR), "missing program: %s", err.msg);

	/* A timeout kills the whole process group; the VM serves on. */
	const char *sleepers[] = { "sh", "-c", "sleep 100 & sleep 100; echo late" };
	x = (struct hatch_exec){ .argv = sleepers, .argc = 3, .timeout_ms = 500 };
	r = run(vm, &o, &x, "timeout");
	cr_assert(r->timed_out && r->signal == SIGKILL, "timed_out %d signal %d", r->timed_out,
		  r->signal);
	cr_assert_eq(o.len[0], 0);
	hatch_free(r);
	sh_ok(vm, &o, "ps -o pid,comm 2>/dev/null | grep -c sleep || true", "0\n");

	/* Output over the limit: truncated, flagged, the true count kept. */
	const char *yes[] = { "sh", "-c", "head -c 300000 /dev/zero" };
	x = (struct hatch_exec){ .argv = yes, .argc = 3, .output_limit = 100000 };
	r = run(vm, &o, &x, "limit");
	cr_assert(r->stdout_truncated && !r->stderr_truncated);
	cr_assert_eq(o.len[0], 100000);
	cr_assert_eq(r->stdout_bytes, 300000);
	hatch_free(r);

	/* Signals to PID 1 from inside the guest: the agent lives on (the
	 * kernel drops signals init has no handler for). */
	sh_ok(vm, &o, "for s in TERM INT HUP USR1 USR2 SEGV QUIT KILL; do kill -$s 1; done; "
		      "echo survived", "survived\n");
	sh_ok(vm, &o, "echo still serving", "still serving\n");

	/* SMP: the pool's vcpus. */
	sh_ok(vm, &o, "nproc", "2\n");

	/* A console flood (kernel messages at error level reach COM1): the
	 * VM serves on and the console ring stays bounded. */
	sh_ok(vm, &o, "i=0; while [ $i -lt 1500 ]; do echo \"<2>flood $i of the console\" "
		      "> /dev/kmsg; i=$((i+1)); done", "");
	sh_ok(vm, &o, "echo alive", "alive\n");
	cr_assert_eq(hatch_vm_info(vm, &info, &err), 0, "%s", err.msg);
	cr_assert_not_null(strstr(info->console_tail, "flood 1499 of the console"),
			   "console tail: %s", info->console_tail);
	cr_assert_lt(strlen(info->console_tail), 4096);
	hatch_free(info);
	struct hatch_err rel = { 0 };
	cr_assert_eq(hatch_vm_release(vm, &rel), 0, "release: %s", rel.msg);
	h_finish(h);
}

/* ---- 2: files ------------------------------------------------------------- */

struct sink {
	uint8_t *buf;
	size_t cap, n;
};

static int to_buf(void *ctx, const void *data, size_t len, struct hatch_err *err)
{
	(void)err;
	struct sink *s = ctx;
	if (len > s->cap - s->n)
		return -1;
	memcpy(s->buf + s->n, data, len);
	s->n += len;
	return 0;
}

Test(linux_pool, files_16_mib_round_trip_list_stat)
{
	struct harness *h = start(NULL);
	pid_t pid;
	int vm = acquire_vm(h, "lx", &pid);
	const size_t size = 16u << 20;
	int fd = memfd_create("payload", MFD_CLOEXEC);
	cr_assert_geq(fd, 0);
	cr_assert_eq(ftruncate(fd, (off_t)size), 0);
	uint8_t *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	cr_assert_neq(p, MAP_FAILED);
	fill_random(p, size);
	uint8_t want[32], got[32];
	sha256_ref(p, size, want);

	struct hatch_err err = { 0 };
	Hatchery__V1__VmWriteFileReply *w = NULL;
	cr_assert_eq(hatch_vm_write_file(vm, "/tmp/payload", 0640, 1000, 1000, fd, size, &w,
					 &err), 0, "%s", err.msg);
	cr_assert_eq(w->bytes_written, size);
	hatch_free(w);
	struct sink s = { .buf = malloc(size), .cap = size };
	cr_assert_not_null(s.buf);
	Hatchery__V1__VmReadFileReply *rd = NULL;
	cr_assert_eq(hatch_vm_read_file_cb(vm, "/tmp/payload", 0, to_buf, &s, &rd, &err), 0,
		     "%s", err.msg);
	sha256_ref(s.buf, s.n, got);
	free(s.buf);
	cr_assert_eq(s.n, size);
	cr_assert_eq(rd->size, size);
	cr_assert_eq(rd->mode & 07777, 0640);
	cr_assert_eq(memcmp(want, got, 32), 0, "16 MiB came back different");
	hatch_free(rd);
	/* The guest agrees. */
	sh_ok(vm, &o, "stat -c '%s %u %g %a' /tmp/payload", "16777216 1000 1000 640\n");

	Hatchery__V1__VmStatReply *st = NULL;
	cr_assert_eq(hatch_vm_stat(vm, "/tmp/payload", &st, &err), 0, "%s", err.msg);
	cr_assert_eq(st->stat->size, size);
	cr_assert_eq(st->stat->uid, 1000);
	hatch_free(st);
	sh_ok(vm, &o, "mkdir /tmp/d && touch /tmp/d/b /tmp/d/a && ln -s a /tmp/d/c", "");
	Hatchery__V1__VmListDirReply *ls = NULL;
	cr_assert_eq(hatch_vm_list_dir(vm, "/tmp/d", &ls, &err), 0, "%s", err.msg);
	cr_assert_eq(ls->n_entries, 3);
	cr_assert_str_eq(ls->entries[0]->name, "a");
	cr_assert_str_eq(ls->entries[2]->name, "c");
	cr_assert(S_ISLNK(ls->entries[2]->mode));
	cr_assert_str_eq(ls->entries[2]->link_target, "a");
	hatch_free(ls);
	/* Errors carry the guest's errno; the VM lives on. */
	cr_assert_eq(hatch_vm_stat(vm, "/nope", &st, &err), -1);
	cr_assert(err.code == E(AGENT_ERROR) && err.sys_errno == ENOENT, "%s", err.msg);
	cr_assert_eq(hatch_vm_read_file(vm, "/tmp/payload", 1024, -1, NULL, &err), -1);
	cr_assert(err.code == E(AGENT_ERROR) && err.sys_errno == EFBIG, "%s", err.msg);
	sh_ok(vm, &o, "echo ok", "ok\n");
	munmap(p, size);
	close(fd);
	struct hatch_err rel = { 0 };
	cr_assert_eq(hatch_vm_release(vm, &rel), 0, "release: %s", rel.msg);
	h_finish(h);
}

/* ---- 3: misbehaving guests: each ends its VM alone ------------------------ */

/* Run `script` expecting the VM to end: the reply is an error (or none:
 * EOF), the child is replaced, the daemon serves on. */
static void vm_dies(struct harness *h, const char *script, int want_code, const char *what)
{
	pid_t pid;
	int vm = acquire_vm(h, "lx", &pid);
	const char *argv[] = { "sh", "-c", script };
	struct hatch_exec x = { .argv = argv, .argc = 3, .timeout_ms = t_ms(5000u) };
	struct hatch_err err = { 0 };
	int r = hatch_vm_exec(vm, &x, NULL, NULL, NULL, &err);
	cr_assert_eq(r, -1, "%s: the exec returned normally", what);
	if (want_code)
		cr_assert_eq(err.code, want_code, "%s: %s", what, err.msg);
	close(vm);
	expect_replaced(h, "lx", pid, what);
}

Test(linux_pool, panic_hostile_frames_and_silence_end_one_vm)
{
	struct harness *h = start(NULL);
	/* The kernel panics: panic=1 reboot=k -> the i8042 reset. */
	vm_dies(h, "echo c > /proc/sysrq-trigger", E(GUEST_FAULT), "kernel panic");
	/* PID 1 killed from inside: root in the guest zeroes the agent's code
	 * through /proc/1/mem (a static binary, text at 0x401000); the agent
	 * faults, the kernel panics ("Attempted to kill init!"), panic=1
	 * reboots, the VM ends. */
	vm_dies(h, "dd if=/dev/zero of=/proc/1/mem bs=4096 seek=1025 count=133 conv=notrunc "
		   "2>/dev/null; sleep 5", E(GUEST_FAULT), "PID 1 killed");
	/* A guest process writes garbage into the agent's channel: a frame
	 * length over the limit. */
	vm_dies(h, "printf '\\377\\377\\377\\177' > /dev/hvc0; sleep 5", E(GUEST_FAULT),
		"oversized agent frame");
	/* ...or a whole frame that is no VmReply (3 bytes of 0xff). */
	vm_dies(h, "printf '\\003\\000\\000\\000\\377\\377\\377' > /dev/hvc0; sleep 5",
		E(GUEST_FAULT), "malformed agent frame");
	/* A guest process steals the agent's input: the next request is never
	 * answered, and the child gives up on the agent. */
	pid_t pid;
	int vm = acquire_vm(h, "lx", &pid);
	sh_ok(vm, &o, "(cat /dev/hvc0 > /dev/null &) ; echo", "\n");
	const char *t[] = { "true" };
	struct hatch_exec x = { .argv = t, .argc = 1, .timeout_ms = 1000 };
	struct hatch_err err = { 0 };
	cr_assert_eq(hatch_vm_exec(vm, &x, NULL, NULL, NULL, &err), -1);
	cr_assert_eq(err.code, E(DEADLINE_EXCEEDED), "silent agent: %s", err.msg);
	close(vm);
	expect_replaced(h, "lx", pid, "silent agent");
	h_finish(h);
}

Test(linux_pool, boot_deadline_is_a_clear_spawn_failure)
{
	/* A pool whose guests cannot boot in time: the spawn fails with the
	 * deadline in its message, an Acquire says so, the daemon and the
	 * other pools carry on. min_idle = 0: spawns only on demand. */
	struct harness *h = h_start(LINUX_POOL("slow", "min_idle = 0\nmax = 1\n"
						       "boot_timeout_ms = 100"));
	int vm = -1;
	struct hatch_err err = { 0 };
	cr_assert_lt(hatch_acquire(h->c, "slow", t_ms(500u), &vm, NULL, &err), 0);
	cr_assert_eq(err.code, E(POOL_EXHAUSTED), "%s", err.msg);
	cr_assert_not_null(strstr(err.msg, "boot_timeout_ms (100 ms)"),
			   "the error carries the child's reason: %s", err.msg);
	struct h_stats st = h_stats(h, "slow");
	cr_assert_geq(st.spawn_failures, 1);
	cr_assert_eq(st.acquisitions, 0);
	Hatchery__V1__PingReply *pr = NULL;
	cr_assert_eq(hatch_ping(h->c, &pr, &err), 0, "Ping after failed boots: %s", err.msg);
	hatch_free(pr);
	h_finish(h);
}
