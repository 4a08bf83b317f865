/* test_agent.c - the Linux guest agent (guest/linux/agent/), natively: the
 * agent runs in test mode (--channel-fd) on one end of a SOCK_STREAM
 * socketpair and the tests speak real frames on the other, as the VMM
 * would on /dev/hvc0. No KVM. Files go to a fresh temp dir per test.
 *
 * In test mode the agent is a child subreaper, so the orphans of an Exec
 * come to it as they would to PID 1 in the guest.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "agent_client.h"
#include "hatchery/clock.h"
#include "testing.h"

TestSuite(agent, .timeout = 60);

static struct agent start(void)
{
	struct agent a = { .fd = -1 };
	strcpy(a.dir, "/tmp/test_agent.XXXXXX");
	cr_assert_not_null(mkdtemp(a.dir), "mkdtemp: %s", strerror(errno));
	int sv[2];
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	a.pid = fork();
	cr_assert_geq(a.pid, 0);
	if (a.pid == 0) {
		if (dup2(sv[1], 3) < 0) /* dup2 clears FD_CLOEXEC on 3 */
			_exit(126);
		execl(HATCH_AGENT_PATH, "hatchery-agent", "--channel-fd", "3", (char *)NULL);
		_exit(127);
	}
	close(sv[1]);
	a.fd = sv[0];
	Reply *r = recv_reply(&a);
	cr_assert_not_null(r, "the agent ended before its first frame");
	cr_assert_eq(r->id, 0);
	cr_assert_eq(r->body_case, HATCHERY__V1__VM_REPLY__BODY_AGENT_READY,
		     "first frame is body %d, not agent_ready", r->body_case);
	cr_assert_gt(strlen(r->agent_ready->kernel_release), 0);
	cr_assert_geq(r->agent_ready->nproc, 1);
	cr_assert_gt(r->agent_ready->boot_ns, 0);
	hatchery__v1__vm_reply__free_unpacked(r, NULL);
	return a;
}

/* Close the channel; the agent must exit with `want` within 5 s. */
static void stop_status(struct agent *a, int want)
{
	close(a->fd);
	int st = 0;
	uint64_t deadline = hatch_now_ns() + (uint64_t)t_ms(5000) * 1000000ull;
	pid_t p;
	while ((p = waitpid(a->pid, &st, WNOHANG)) == 0 && hatch_now_ns() < deadline)
		usleep(10000);
	if (p == 0) {
		kill(a->pid, SIGKILL);
		waitpid(a->pid, &st, 0);
		cr_assert_fail("the agent did not exit at the end of its channel");
	}
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == want,
		  "the agent ended with status 0x%x, not exit %d", st, want);
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", a->dir);
	cr_assert_eq(system(cmd), 0);
}

static void stop(struct agent *a)
{
	stop_status(a, 0);
}

Test(agent, ping_and_ready)
{
	struct agent a = start();
	ping(&a, 1);
	ping(&a, 2);
	stop(&a);
}

Test(agent, exit_codes_and_signal)
{
	struct agent a = start();
	struct result r = exec_run(&a, 1, &(struct run){ .argv = ARGV("true") });
	cr_assert_eq(r.code, 0, "%s", r.msg);
	cr_assert_eq(r.x.exit_code, 0);
	cr_assert_eq(r.x.signal, 0);
	cr_assert_not(r.x.timed_out);
	cr_assert_gt(r.x.duration_ns, 0);
	result_free(&r);
	r = exec_run(&a, 2, &(struct run){ .argv = ARGV("false") });
	cr_assert_eq(r.x.exit_code, 1);
	result_free(&r);
	r = exec_run(&a, 3, &(struct run){ .argv = ARGV("sh", "-c", "kill -TERM $$") });
	cr_assert_eq(r.code, 0, "%s", r.msg);
	cr_assert_eq(r.x.signal, SIGTERM, "signal %d exit %d", r.x.signal, r.x.exit_code);
	cr_assert_not(r.x.timed_out);
	result_free(&r);
	r = exec_run(&a, 4, &(struct run){ .argv = ARGV("sh", "-c", "exit 42") });
	cr_assert_eq(r.x.exit_code, 42);
	result_free(&r);
	stop(&a);
}

Test(agent, binary_output_byte_exact)
{
	struct agent a = start();
	char script[256];
	snprintf(script, sizeof(script), "head -c 100000 /dev/urandom | tee %s/x", a.dir);
	struct result r = sh_ok(&a, 1, script);
	cr_assert_eq(r.out_len, 100000);
	cr_assert_eq(r.x.stdout_bytes, 100000);
	cr_assert_not(r.x.stdout_truncated);
	char path[128];
	snprintf(path, sizeof(path), "%s/x", a.dir);
	FILE *f = fopen(path, "rb");
	cr_assert_not_null(f);
	uint8_t *want = malloc(100000);
	cr_assert_eq(fread(want, 1, 100000, f), 100000);
	fclose(f);
	cr_assert_eq(memcmp(r.out, want, 100000), 0, "stdout differs from the file tee wrote");
	free(want);
	result_free(&r);

	/* Every byte value, through stdin, to stdout and to stderr. */
	uint8_t all[256];
	for (int i = 0; i < 256; i++)
		all[i] = (uint8_t)i;
	r = exec_run(&a, 2, &(struct run){ .argv = ARGV("cat"), .in = all, .in_len = 256 });
	cr_assert_eq(r.out_len, 256);
	cr_assert_eq(memcmp(r.out, all, 256), 0);
	cr_assert_eq(r.err_len, 0);
	result_free(&r);
	r = exec_run(&a, 3, &(struct run){ .argv = ARGV("sh", "-c", "cat >&2"), .in = all,
					   .in_len = 256 });
	cr_assert_eq(r.err_len, 256);
	cr_assert_eq(r.x.stderr_bytes, 256);
	cr_assert_eq(memcmp(r.err, all, 256), 0);
	cr_assert_eq(r.out_len, 0);
	result_free(&r);
	stop(&a);
}

Test(agent, stdin_larger_than_a_pipe)
{
	struct agent a = start();
	/* Over the 64 KiB pipe buffer: the agent must feed it as cat reads. */
	size_t n = 65000;
	uint8_t *in = malloc(n);
	for (size_t i = 0; i < n; i++)
		in[i] = (uint8_t)(i * 7 + 3);
	struct result r = exec_run(&a, 1, &(struct run){ .argv = ARGV("cat"), .in = in,
							 .in_len = n });
	cr_assert_eq(r.out_len, n);
	cr_assert_eq(memcmp(r.out, in, n), 0);
	free(in);
	result_free(&r);
	stop(&a);
}

Test(agent, env_and_cwd)
{
	struct agent a = start();
	struct result r = sh_ok(&a, 1, "echo \"$PATH|$HOME|$TERM\"");
	cr_assert_str_eq((char *)r.out,
			 "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin|/root|dumb\n");
	result_free(&r);
	r = exec_run(&a, 2, &(struct run){ .argv = ARGV("/bin/sh", "-c", "echo \"$FOO|$HOME\""),
					   .env = ARGV("FOO=bar baz") });
	cr_assert_str_eq((char *)r.out, "bar baz|\n");
	result_free(&r);
	/* argv[0] is looked up in the program's own PATH. */
	r = exec_run(&a, 3, &(struct run){ .argv = ARGV("sh", "-c", "echo ok"),
					   .env = ARGV("PATH=/nonexistent") });
	cr_assert_eq(r.code, E_AGENT, "found sh outside PATH");
	cr_assert_eq(r.guest_errno, ENOENT);
	result_free(&r);
	r = exec_run(&a, 4, &(struct run){ .argv = ARGV("pwd"), .cwd = a.dir });
	char want[128];
	snprintf(want, sizeof(want), "%s\n", a.dir);
	cr_assert_str_eq((char *)r.out, want);
	result_free(&r);
	r = exec_run(&a, 5, &(struct run){ .argv = ARGV("pwd") });
	cr_assert_str_eq((char *)r.out, "/\n");
	result_free(&r);
	stop(&a);
}

Test(agent, start_failures_are_agent_errors)
{
	struct agent a = start();
	struct result r = exec_run(&a, 1, &(struct run){ .argv = ARGV("true"),
							 .cwd = "/nonexistent/dir" });
	cr_assert_eq(r.code, E_AGENT, "code %d: %s", r.code, r.msg);
	cr_assert_eq(r.guest_errno, ENOENT);
	cr_assert(strstr(r.msg, "/nonexistent/dir") && strstr(r.msg, strerror(ENOENT)),
		  "message: %s", r.msg);
	result_free(&r);
	r = exec_run(&a, 2, &(struct run){ .argv = ARGV("no-such-program-here") });
	cr_assert_eq(r.code, E_AGENT, "code %d: %s", r.code, r.msg);
	cr_assert_eq(r.guest_errno, ENOENT);
	cr_assert(strstr(r.msg, "no-such-program-here"), "message: %s", r.msg);
	result_free(&r);
	r = exec_run(&a, 3, &(struct run){ .argv = ARGV("") });
	cr_assert_eq(r.code, HATCHERY__V1__ERROR_CODE__INVALID_ARGUMENT, "%s", r.msg);
	result_free(&r);
	r = exec_run(&a, 4, &(struct run){ .argv = ARGV("true"), .env = ARGV("NOEQUALS") });
	cr_assert_eq(r.code, HATCHERY__V1__ERROR_CODE__INVALID_ARGUMENT, "%s", r.msg);
	result_free(&r);
	ping(&a, 5);
	stop(&a);
}

static bool gone(pid_t pid, unsigned ms)
{
	uint64_t deadline = hatch_now_ns() + (uint64_t)t_ms(ms) * 1000000ull;
	while (hatch_now_ns() < deadline) {
		if (kill(pid, 0) < 0 && errno == ESRCH)
			return true; /* dead and reaped (by the agent: it is their subreaper) */
		usleep(10000);
	}
	return false;
}

Test(agent, timeout_kills_the_process_tree)
{
	struct agent a = start();
	struct result r = exec_run(&a, 1, &(struct run){
		.argv = ARGV("sh", "-c", "sleep 100 & echo $!; sleep 100"), .timeout_ms = 500 });
	cr_assert_eq(r.code, 0, "%s", r.msg);
	cr_assert(r.x.timed_out);
	cr_assert_eq(r.x.signal, SIGKILL);
	cr_assert_lt(r.wall_ms, t_ms(5000), "timed out after %llu ms",
		     (unsigned long long)r.wall_ms);
	pid_t bg = atoi((char *)r.out);
	cr_assert_gt(bg, 0, "no pid in %s", r.out);
	cr_assert(gone(bg, 3000), "the background sleep %d survived the timeout", bg);
	result_free(&r);
	ping(&a, 2);
	stop(&a);
}

Test(agent, hostile_workloads)
{
	struct agent a = start();
	/* Many processes at once, all killed at the timeout. */
	struct result r = exec_run(&a, 1, &(struct run){
		.argv = ARGV("sh", "-c", "i=0; while [ $i -lt 200 ]; do sleep 60 & i=$((i+1)); done; "
					 "echo spawned; sleep 60"),
		.timeout_ms = 2000 });
	cr_assert(r.x.timed_out, "exit %d signal %d", r.x.exit_code, r.x.signal);
	result_free(&r);
	ping(&a, 2);
	/* stdout closed at once; stderr still comes. */
	r = exec_run(&a, 3, &(struct run){ .argv = ARGV("sh", "-c", "exec >&-; echo late >&2") });
	cr_assert_eq(r.x.exit_code, 0);
	cr_assert_str_eq((char *)r.err, "late\n");
	result_free(&r);
	/* A grandchild that keeps stdout open after the program exits: the
	 * answer comes anyway, soon. */
	r = exec_run(&a, 4, &(struct run){ .argv = ARGV("sh", "-c", "sleep 30 & echo $!") });
	cr_assert_eq(r.code, 0, "%s", r.msg);
	cr_assert_not(r.x.timed_out);
	cr_assert_eq(r.x.exit_code, 0);
	cr_assert_lt(r.wall_ms, t_ms(3000), "answered after %llu ms", (unsigned long long)r.wall_ms);
	pid_t bg = atoi((char *)r.out);
	cr_assert_gt(bg, 0);
	kill(bg, SIGKILL);
	cr_assert(gone(bg, 3000), "the agent did not reap the orphan %d", bg);
	result_free(&r);
	ping(&a, 5);
	stop(&a);
}

Test(agent, output_limit_truncates_and_counts)
{
	struct agent a = start();
	struct result r = exec_run(&a, 1, &(struct run){
		.argv = ARGV("sh", "-c", "head -c 300000 /dev/zero; head -c 5000 /dev/zero >&2"),
		.limit = 1000 });
	cr_assert_eq(r.x.exit_code, 0);
	cr_assert_eq(r.out_len, 1000);
	cr_assert(r.x.stdout_truncated);
	cr_assert_eq(r.x.stdout_bytes, 300000);
	cr_assert_eq(r.err_len, 1000);
	cr_assert(r.x.stderr_truncated);
	cr_assert_eq(r.x.stderr_bytes, 5000);
	result_free(&r);
	/* Exactly at the limit: not truncated. */
	r = exec_run(&a, 2, &(struct run){ .argv = ARGV("head", "-c", "1000", "/dev/zero"),
					   .limit = 1000 });
	cr_assert_eq(r.out_len, 1000);
	cr_assert_not(r.x.stdout_truncated);
	result_free(&r);
	stop(&a);
}

Test(agent, exec_as_another_user)
{
	if (geteuid() != 0)
		t_skip("needs root to change uid");
	struct agent a = start();
	struct result r = exec_run(&a, 1, &(struct run){ .argv = ARGV("sh", "-c", "id -u; id -g"),
							 .uid = 65534, .gid = 65533 });
	cr_assert_eq(r.code, 0, "%s", r.msg);
	cr_assert_str_eq((char *)r.out, "65534\n65533\n");
	result_free(&r);
	stop(&a);
}

/* ---- AgentResume --------------------------------------------------------- */

/* An AgentResume with n bytes of the host's entropy; returns the reply. */
static Reply *resume(struct agent *a, uint64_t id, uint64_t realtime_ns, size_t n)
{
	uint8_t ent[512];
	cr_assert_leq(n, sizeof(ent));
	cr_assert_eq(getrandom(ent, n, 0), (ssize_t)n);
	Hatchery__V1__VmAgentResume rs = HATCHERY__V1__VM_AGENT_RESUME__INIT;
	rs.realtime_ns = realtime_ns;
	rs.entropy.data = ent;
	rs.entropy.len = n;
	rs.generation = 3;
	Req r = HATCHERY__V1__VM_REQUEST__INIT;
	r.id = id;
	r.body_case = HATCHERY__V1__VM_REQUEST__BODY_AGENT_RESUME;
	r.agent_resume = &rs;
	send_req(a, &r);
	Reply *rep = recv_reply(a);
	cr_assert_not_null(rep, "the agent ended instead of answering the resume");
	cr_assert_eq(rep->id, id);
	return rep;
}

/* A resume that passed the checks: agent_ready, freshly filled, with the
 * clock left alone (test mode). Adding entropy needs CAP_SYS_ADMIN: only
 * a test that is not root accepts the agent's EPERM instead. */
static void assert_resumed(Reply *rep)
{
	if (rep->error && geteuid() != 0) {
		cr_assert_eq(rep->error->code, E_AGENT, "%s", rep->error->message);
		cr_assert_eq(rep->error->guest_errno, EPERM, "%s", rep->error->message);
		cr_assert(strstr(rep->error->message, "RNDADDENTROPY"), "%s", rep->error->message);
		return;
	}
	cr_assert_null(rep->error, "resume: %s", rep->error ? rep->error->message : "");
	cr_assert_eq(rep->body_case, HATCHERY__V1__VM_REPLY__BODY_AGENT_READY,
		     "resume answered with body %d", rep->body_case);
	cr_assert_gt(strlen(rep->agent_ready->kernel_release), 0);
	cr_assert_geq(rep->agent_ready->nproc, 1);
	cr_assert_gt(rep->agent_ready->boot_ns, 0);
	/* Test mode runs on the host: it must never set the clock, and
	 * says it did not. */
	cr_assert_not(rep->agent_ready->clock_set, "the test-mode agent says it set the clock");
}

Test(agent, resume_answers_ready_and_leaves_the_host_clock)
{
	struct agent a = start();
	/* The host's own time, so that even an agent that broke the rule
	 * above would not move the host's clock by more than microseconds. */
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	uint64_t now_ns = (uint64_t)now.tv_sec * 1000000000ull + (uint64_t)now.tv_nsec;
	Reply *rep = resume(&a, 7, now_ns, 32);
	assert_resumed(rep);
	hatchery__v1__vm_reply__free_unpacked(rep, NULL);
	/* realtime_ns 0: the clock is left alone anywhere. */
	rep = resume(&a, 8, 0, 256);
	assert_resumed(rep);
	hatchery__v1__vm_reply__free_unpacked(rep, NULL);
	ping(&a, 9);
	stop(&a);
}

Test(agent, resume_entropy_out_of_bounds_is_refused)
{
	struct agent a = start();
	const size_t bad[] = { 0, 31, 257 };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		Reply *rep = resume(&a, 10 + i, 0, bad[i]);
		cr_assert_not_null(rep->error, "entropy of %zu bytes was taken", bad[i]);
		cr_assert_eq(rep->error->code, HATCHERY__V1__ERROR_CODE__INVALID_ARGUMENT,
			     "%zu bytes: %s", bad[i], rep->error->message);
		cr_assert(strstr(rep->error->message, "entropy"), "%s", rep->error->message);
		hatchery__v1__vm_reply__free_unpacked(rep, NULL);
	}
	/* The agent serves on. */
	ping(&a, 20);
	Reply *rep = resume(&a, 21, 0, 32);
	assert_resumed(rep);
	hatchery__v1__vm_reply__free_unpacked(rep, NULL);
	stop(&a);
}

/* ---- files --------------------------------------------------------------- */

/* WriteFile of data in chunks of `chunk` bytes; returns the reply. */
Test(agent, write_16mib_then_read_back)
{
	struct agent a = start();
	size_t n = 16u << 20;
	uint8_t *data = malloc(n);
	uint32_t x = 12345;
	for (size_t i = 0; i < n; i++) {
		x = x * 1103515245u + 12345u;
		data[i] = (uint8_t)(x >> 16);
	}
	char path[128];
	snprintf(path, sizeof(path), "%s/big", a.dir);
	Reply *rep = write_file(&a, 1, path, data, n, 0600, 1000, 65000);
	cr_assert_null(rep->error, "%s", rep->error ? rep->error->message : "");
	cr_assert_eq(rep->body_case, HATCHERY__V1__VM_REPLY__BODY_WRITE_FILE);
	cr_assert_eq(rep->write_file->bytes_written, n);
	hatchery__v1__vm_reply__free_unpacked(rep, NULL);
	struct stat st;
	cr_assert_eq(stat(path, &st), 0);
	cr_assert_eq(st.st_mode & 07777, 0600);
	cr_assert_eq((size_t)st.st_size, n);

	uint8_t *back;
	size_t len;
	rep = read_file(&a, 2, path, 0, &back, &len);
	cr_assert_null(rep->error, "%s", rep->error ? rep->error->message : "");
	cr_assert_eq(rep->body_case, HATCHERY__V1__VM_REPLY__BODY_READ_FILE);
	cr_assert_eq(rep->read_file->size, n);
	cr_assert(S_ISREG(rep->read_file->mode));
	cr_assert_eq(len, n);
	cr_assert_eq(memcmp(back, data, n), 0, "read back differs from what was written");
	hatchery__v1__vm_reply__free_unpacked(rep, NULL);
	free(back);

	/* Rewrite smaller, all in the first packet: truncated, new mode. */
	rep = write_file(&a, 3, path, (const uint8_t *)"hello", 5, 0, 5, 1);
	cr_assert_null(rep->error);
	hatchery__v1__vm_reply__free_unpacked(rep, NULL);
	cr_assert_eq(stat(path, &st), 0);
	cr_assert_eq(st.st_size, 5);
	cr_assert_eq(st.st_mode & 07777, 0644);
	/* Empty file. */
	rep = write_file(&a, 4, path, NULL, 0, 0755, 0, 1);
	cr_assert_null(rep->error);
	hatchery__v1__vm_reply__free_unpacked(rep, NULL);
	cr_assert_eq(stat(path, &st), 0);
	cr_assert_eq(st.st_size, 0);
	cr_assert_eq(st.st_mode & 07777, 0755);
	free(data);
	stop(&a);
}

Test(agent, write_errors_come_after_the_last_byte)
{
	struct agent a = start();
	size_t n = 200000;
	uint8_t *data = calloc(1, n);
	char path[128];
	snprintf(path, sizeof(path), "%s/no/such/dir/f", a.dir);
	Reply *rep = write_file(&a, 1, path, data, n, 0, 100, 60000);
	cr_assert_not_null(rep->error);
	cr_assert_eq(rep->error->code, E_AGENT);
	cr_assert_eq(rep->error->guest_errno, ENOENT);
	cr_assert(strstr(rep->error->message, path), "message: %s", rep->error->message);
	hatchery__v1__vm_reply__free_unpacked(rep, NULL);
	/* The chunks were drained: the next request is answered in step. */
	ping(&a, 2);
	/* A relative path is refused before anything is opened, and its
	 * chunks are still read: one answer, after the last one. */
	rep = write_file(&a, 3, "relative", data, 150000, 0, 10, 60000);
	cr_assert_eq(rep->error->code, HATCHERY__V1__ERROR_CODE__INVALID_ARGUMENT);
	hatchery__v1__vm_reply__free_unpacked(rep, NULL);
	free(data);
	ping(&a, 4);

	/* A write_file cut short by another request: the write is answered
	 * (INVALID_ARGUMENT), then the request is served. */
	Hatchery__V1__VmWriteFileRequest w = HATCHERY__V1__VM_WRITE_FILE_REQUEST__INIT;
	char path2[128];
	snprintf(path2, sizeof(path2), "%s/cut", a.dir);
	w.path = path2;
	w.size = 1000;
	Req r = HATCHERY__V1__VM_REQUEST__INIT;
	r.id = 5;
	r.body_case = HATCHERY__V1__VM_REQUEST__BODY_WRITE_FILE;
	r.write_file = &w;
	send_req(&a, &r);
	Hatchery__V1__VmPingRequest p = HATCHERY__V1__VM_PING_REQUEST__INIT;
	Req pr = HATCHERY__V1__VM_REQUEST__INIT;
	pr.id = 6;
	pr.body_case = HATCHERY__V1__VM_REQUEST__BODY_PING;
	pr.ping = &p;
	send_req(&a, &pr);
	rep = recv_reply(&a);
	cr_assert_eq(rep->id, 5);
	cr_assert_eq(rep->error->code, HATCHERY__V1__ERROR_CODE__INVALID_ARGUMENT);
	hatchery__v1__vm_reply__free_unpacked(rep, NULL);
	rep = recv_reply(&a);
	cr_assert_eq(rep->id, 6);
	cr_assert_eq(rep->body_case, HATCHERY__V1__VM_REPLY__BODY_PING);
	hatchery__v1__vm_reply__free_unpacked(rep, NULL);
	stop(&a);
}

Test(agent, read_file_over_max_size_is_efbig)
{
	struct agent a = start();
	char path[128];
	snprintf(path, sizeof(path), "%s/f", a.dir);
	FILE *f = fopen(path, "w");
	fprintf(f, "%0100d", 0);
	fclose(f);
	uint8_t *back;
	size_t len;
	Reply *rep = read_file(&a, 1, path, 99, &back, &len);
	cr_assert_not_null(rep->error);
	cr_assert_eq(rep->error->code, E_AGENT);
	cr_assert_eq(rep->error->guest_errno, EFBIG);
	cr_assert_eq(len, 0, "data came before the refusal");
	hatchery__v1__vm_reply__free_unpacked(rep, NULL);
	free(back);
	rep = read_file(&a, 2, path, 100, &back, &len);
	cr_assert_null(rep->error);
	cr_assert_eq(len, 100);
	hatchery__v1__vm_reply__free_unpacked(rep, NULL);
	free(back);
	rep = read_file(&a, 3, "/nonexistent/file", 0, &back, &len);
	cr_assert_eq(rep->error->code, E_AGENT);
	cr_assert_eq(rep->error->guest_errno, ENOENT);
	hatchery__v1__vm_reply__free_unpacked(rep, NULL);
	free(back);
	stop(&a);
}

Test(agent, list_dir_and_stat)
{
	struct agent a = start();
	char p[256];
	const char *files[] = { "b", "a", "c" };
	for (size_t i = 0; i < 3; i++) {
		snprintf(p, sizeof(p), "%s/%s", a.dir, files[i]);
		FILE *f = fopen(p, "w");
		fputs(files[i], f);
		fclose(f);
	}
	snprintf(p, sizeof(p), "%s/d", a.dir);
	cr_assert_eq(mkdir(p, 0700), 0);
	snprintf(p, sizeof(p), "%s/l", a.dir);
	cr_assert_eq(symlink("a", p), 0);

	Hatchery__V1__VmListDirRequest l = HATCHERY__V1__VM_LIST_DIR_REQUEST__INIT;
	l.path = a.dir;
	Req r = HATCHERY__V1__VM_REQUEST__INIT;
	r.id = 1;
	r.body_case = HATCHERY__V1__VM_REQUEST__BODY_LIST_DIR;
	r.list_dir = &l;
	send_req(&a, &r);
	Reply *rep = recv_reply(&a);
	cr_assert_null(rep->error, "%s", rep->error ? rep->error->message : "");
	Hatchery__V1__VmListDirReply *lr = rep->list_dir;
	cr_assert_eq(lr->n_entries, 5);
	cr_assert_not(lr->truncated);
	const char *want[] = { "a", "b", "c", "d", "l" };
	for (size_t i = 0; i < 5; i++)
		cr_assert_str_eq(lr->entries[i]->name, want[i]);
	cr_assert(S_ISREG(lr->entries[0]->mode));
	cr_assert_eq(lr->entries[0]->size, 1);
	cr_assert(S_ISDIR(lr->entries[3]->mode));
	cr_assert_eq(lr->entries[3]->mode & 07777, 0700);
	cr_assert(S_ISLNK(lr->entries[4]->mode));
	cr_assert_str_eq(lr->entries[4]->link_target, "a");
	cr_assert_gt(lr->entries[0]->mtime_ns, 0);
	hatchery__v1__vm_reply__free_unpacked(rep, NULL);

	Hatchery__V1__VmStatRequest s = HATCHERY__V1__VM_STAT_REQUEST__INIT;
	s.path = p; /* the symlink: lstat, not followed */
	r.id = 2;
	r.body_case = HATCHERY__V1__VM_REQUEST__BODY_STAT;
	r.stat = &s;
	send_req(&a, &r);
	rep = recv_reply(&a);
	cr_assert_null(rep->error);
	cr_assert(S_ISLNK(rep->stat->stat->mode));
	cr_assert_str_eq(rep->stat->stat->link_target, "a");
	cr_assert_str_eq(rep->stat->stat->name, p);
	hatchery__v1__vm_reply__free_unpacked(rep, NULL);

	s.path = (char *)"/nonexistent";
	r.id = 3;
	send_req(&a, &r);
	rep = recv_reply(&a);
	cr_assert_eq(rep->error->code, E_AGENT);
	cr_assert_eq(rep->error->guest_errno, ENOENT);
	hatchery__v1__vm_reply__free_unpacked(rep, NULL);
	stop(&a);
}

Test(agent, list_dir_truncates_at_one_packet)
{
	struct agent a = start();
	char p[512];
	/* 1000 entries of ~100-byte names: far over one packet. */
	for (int i = 0; i < 1000; i++) {
		snprintf(p, sizeof(p), "%s/%04d-%0100d", a.dir, i, 0);
		int fd = open(p, O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
		cr_assert_geq(fd, 0);
		close(fd);
	}
	Hatchery__V1__VmListDirRequest l = HATCHERY__V1__VM_LIST_DIR_REQUEST__INIT;
	l.path = a.dir;
	Req r = HATCHERY__V1__VM_REQUEST__INIT;
	r.id = 1;
	r.body_case = HATCHERY__V1__VM_REQUEST__BODY_LIST_DIR;
	r.list_dir = &l;
	send_req(&a, &r);
	Reply *rep = recv_reply(&a);
	cr_assert_null(rep->error);
	cr_assert(rep->list_dir->truncated);
	cr_assert_gt(rep->list_dir->n_entries, 100);
	cr_assert_lt(rep->list_dir->n_entries, 1000);
	/* The first ones in order, none skipped. */
	for (size_t i = 0; i < rep->list_dir->n_entries; i++) {
		char want[32];
		snprintf(want, sizeof(want), "%04zu", i);
		cr_assert_eq(strncmp(rep->list_dir->entries[i]->name, want, 4), 0);
	}
	hatchery__v1__vm_reply__free_unpacked(rep, NULL);
	stop(&a);
}

/* ---- protocol faults ---------------------------------------------------- */

Test(agent, malformed_frame_is_answered_and_skipped)
{
	struct agent a = start();
	/* Field 1 as a length-delimited field running past the end. */
	const uint8_t bad[] = { 6, 0, 0, 0, 0x0a, 0xff, 0xff, 0xff, 0x0f, 0x01 };
	send_raw(&a, bad, sizeof(bad));
	Reply *rep = recv_reply(&a);
	cr_assert_eq(rep->id, 0);
	cr_assert_not_null(rep->error);
	cr_assert_eq(rep->error->code, HATCHERY__V1__ERROR_CODE__MALFORMED);
	hatchery__v1__vm_reply__free_unpacked(rep, NULL);
	/* An empty frame decodes (id 0, no body): refused, not fatal. */
	const uint8_t empty[] = { 0, 0, 0, 0 };
	send_raw(&a, empty, sizeof(empty));
	rep = recv_reply(&a);
	cr_assert_eq(rep->error->code, HATCHERY__V1__ERROR_CODE__INVALID_ARGUMENT);
	hatchery__v1__vm_reply__free_unpacked(rep, NULL);
	/* A file_chunk with no write_file before it. */
	Hatchery__V1__VmFileChunk c = HATCHERY__V1__VM_FILE_CHUNK__INIT;
	Req r = HATCHERY__V1__VM_REQUEST__INIT;
	r.id = 7;
	r.body_case = HATCHERY__V1__VM_REQUEST__BODY_FILE_CHUNK;
	r.file_chunk = &c;
	send_req(&a, &r);
	rep = recv_reply(&a);
	cr_assert_eq(rep->id, 7);
	cr_assert_eq(rep->error->code, HATCHERY__V1__ERROR_CODE__INVALID_ARGUMENT);
	hatchery__v1__vm_reply__free_unpacked(rep, NULL);
	/* A request of the other guest kinds. */
	Hatchery__V1__VmCallRequest call = HATCHERY__V1__VM_CALL_REQUEST__INIT;
	r.id = 8;
	r.body_case = HATCHERY__V1__VM_REQUEST__BODY_CALL;
	r.call = &call;
	send_req(&a, &r);
	rep = recv_reply(&a);
	cr_assert_eq(rep->id, 8);
	cr_assert_eq(rep->error->code, HATCHERY__V1__ERROR_CODE__INVALID_ARGUMENT);
	hatchery__v1__vm_reply__free_unpacked(rep, NULL);
	ping(&a, 9);
	stop(&a);
}

Test(agent, oversized_length_ends_the_channel)
{
	struct agent a = start();
	const uint8_t big[] = { 0x01, 0x00, 0x01, 0x00 }; /* 65,537 */
	send_raw(&a, big, sizeof(big));
	Reply *rep = recv_reply(&a);
	cr_assert_not_null(rep);
	cr_assert_eq(rep->id, 0);
	cr_assert_eq(rep->error->code, HATCHERY__V1__ERROR_CODE__MESSAGE_TOO_LARGE);
	hatchery__v1__vm_reply__free_unpacked(rep, NULL);
	/* Then the agent stops serving: EOF, exit status 3 (as PID 1: reboot). */
	cr_assert_null(recv_reply(&a), "the agent served on after an oversized frame");
	stop_status(&a, 3);
}

Test(agent, frames_split_and_batched)
{
	struct agent a = start();
	/* Two pings in one write, then one byte at a time. */
	uint8_t buf[64];
	size_t n = 0;
	for (uint64_t id = 1; id <= 3; id++) {
		Hatchery__V1__VmPingRequest p = HATCHERY__V1__VM_PING_REQUEST__INIT;
		Req r = HATCHERY__V1__VM_REQUEST__INIT;
		r.id = id;
		r.body_case = HATCHERY__V1__VM_REQUEST__BODY_PING;
		r.ping = &p;
		size_t len = hatchery__v1__vm_request__get_packed_size(&r);
		buf[n] = (uint8_t)len;
		buf[n + 1] = buf[n + 2] = buf[n + 3] = 0;
		hatchery__v1__vm_request__pack(&r, buf + n + 4);
		n += 4 + len;
	}
	size_t two = n * 2 / 3;
	send_raw(&a, buf, two);
	for (size_t i = two; i < n; i++) {
		send_raw(&a, buf + i, 1);
		usleep(1000);
	}
	for (uint64_t id = 1; id <= 3; id++) {
		Reply *rep = recv_reply(&a);
		cr_assert_eq(rep->id, id);
		cr_assert_eq(rep->body_case, HATCHERY__V1__VM_REPLY__BODY_PING);
		hatchery__v1__vm_reply__free_unpacked(rep, NULL);
	}
	stop(&a);
}
