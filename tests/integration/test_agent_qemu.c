/* test_agent_qemu.c - the build's kernel and initramfs (build/linux/) booted
 * in QEMU, with the agent as /init, driven over the virtio-console port it
 * serves: the whole guest side of a linux pool, checked against a VMM that
 * is not ours. QEMU's microvm machine describes its virtio-mmio devices in
 * ACPI, as hatchery's VMM does (docs/guest-linux.md), so the same modules
 * come up. The boot, the port (a virtserialport) and why always TCG:
 * qemu_guest.c.
 *
 * Registered only when CMake found qemu-system-x86_64 and a kernel.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "qemu_guest.h"
#include "hatchery/clock.h"
#include "testing.h"

TestSuite(agent_qemu, .timeout = 180);

static struct agent boot(void)
{
	return qemu_boot(NULL, "microvm,acpi=on,rtc=on", NULL);
}

Test(agent_qemu, serves_as_init)
{
	struct agent a = boot();
	ping(&a, 1);
	struct result r = sh_ok(&a, 2, "uname -r");
	cr_assert_str_eq((char *)r.out, HATCH_KERNEL_RELEASE "\n");
	result_free(&r);
	/* The busybox tools a workload leans on, at both /bin and /usr/bin. */
	r = sh_ok(&a, 3, "date +%s >/dev/null && head -c 1000 /dev/zero | /usr/bin/sha256sum; "
			 "dd if=/dev/zero bs=1k count=10 2>/dev/null | /bin/wc -c");
	cr_assert_str_eq((char *)r.out,
			 "541b3e9daa09b20bf85fa273e5cbd3e80185aa4ec298e765db87742b70138a53  -\n"
			 "10240\n");
	result_free(&r);
	r = sh_ok(&a, 4, "cut -d' ' -f2,3 /proc/mounts | sort");
	const char *mounts[] = { "/ rootfs", "/dev devtmpfs", "/dev/pts devpts", "/proc proc",
				 "/run tmpfs", "/sys sysfs", "/tmp tmpfs" };
	for (size_t i = 0; i < sizeof(mounts) / sizeof(mounts[0]); i++)
		cr_assert_not_null(strstr((char *)r.out, mounts[i]), "no %s in\n%s", mounts[i], r.out);
	result_free(&r);

	/* 4 MiB through the port both ways. */
	size_t n = 4u << 20;
	uint8_t *data = malloc(n);
	for (size_t i = 0; i < n; i++)
		data[i] = (uint8_t)((i * 2654435761u) >> 13);
	Reply *rep = write_file(&a, 5, "/tmp/f", data, n, 0600, 0, 60000);
	cr_assert_null(rep->error, "%s", rep->error ? rep->error->message : "");
	cr_assert_eq(rep->write_file->bytes_written, n);
	hatchery__v1__vm_reply__free_unpacked(rep, NULL);
	uint8_t *back;
	size_t len;
	rep = read_file(&a, 6, "/tmp/f", 0, &back, &len);
	cr_assert_null(rep->error, "%s", rep->error ? rep->error->message : "");
	cr_assert_eq(len, n);
	cr_assert_eq(memcmp(back, data, n), 0, "4 MiB came back different");
	cr_assert_eq(rep->read_file->mode & 07777, 0600);
	hatchery__v1__vm_reply__free_unpacked(rep, NULL);
	free(back);
	free(data);

	/* The timeout's kill reaches the background job; the agent serves on. */
	r = exec_run(&a, 7, &(struct run){ .argv = ARGV("sh", "-c", "sleep 100 & sleep 100"),
					   .timeout_ms = 1000 });
	cr_assert(r.x.timed_out);
	cr_assert_eq(r.x.signal, SIGKILL);
	result_free(&r);
	r = sh_ok(&a, 8, "ps -o stat= -o comm= | grep -c sleep || true");
	cr_assert_str_eq((char *)r.out, "0\n", "sleeps left (or unreaped): %s", r.out);
	result_free(&r);
	r = exec_run(&a, 9, &(struct run){ .argv = ARGV("nonexistent-program") });
	cr_assert_eq(r.code, E_AGENT);
	cr_assert_eq(r.guest_errno, ENOENT);
	result_free(&r);
	qemu_shutdown(&a);
}

Test(agent_qemu, oversized_frame_ends_the_vm)
{
	struct agent a = boot();
	const uint8_t big[] = { 0x01, 0x00, 0x01, 0x00 }; /* 65,537 */
	send_raw(&a, big, sizeof(big));
	Reply *r = recv_reply(&a);
	cr_assert_not_null(r);
	cr_assert_eq(r->error->code, HATCHERY__V1__ERROR_CODE__MESSAGE_TOO_LARGE);
	hatchery__v1__vm_reply__free_unpacked(r, NULL);
	/* reboot(RB_AUTOBOOT) with -no-reboot: QEMU exits, cleanly. */
	uint64_t deadline = hatch_now_ns() + (uint64_t)t_ms(30000) * 1000000ull;
	int st = 0;
	pid_t p;
	while ((p = waitpid(a.pid, &st, WNOHANG)) == 0 && hatch_now_ns() < deadline)
		usleep(20000);
	cr_assert_eq(p, a.pid, "the VM did not end after the agent's fatal error");
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "QEMU status 0x%x", st);
	char path[128];
	snprintf(path, sizeof(path), "%s/console.log", a.dir);
	FILE *f = fopen(path, "r");
	cr_assert_not_null(f);
	char line[512];
	bool fatal = false;
	while (fgets(line, sizeof(line), f))
		fatal |= strstr(line, "hatchery-agent: fatal:") != NULL;
	fclose(f);
	cr_assert(fatal, "no fatal line on the console");
	a.pid = -1;
	close(a.fd);
	snprintf(path, sizeof(path), "rm -rf %s", a.dir);
	cr_assert_eq(system(path), 0);
}

/* ping() with room for a guest the bomb has slowed down. */
static void slow_ping(struct agent *a, uint64_t id)
{
	Hatchery__V1__VmPingRequest p = HATCHERY__V1__VM_PING_REQUEST__INIT;
	Req r = HATCHERY__V1__VM_REQUEST__INIT;
	r.id = id;
	r.body_case = HATCHERY__V1__VM_REQUEST__BODY_PING;
	r.ping = &p;
	send_req(a, &r);
	Reply *rep = recv_reply_ms(a, 60000);
	cr_assert_not_null(rep);
	cr_assert_eq(rep->id, id);
	cr_assert_eq(rep->body_case, HATCHERY__V1__VM_REPLY__BODY_PING);
	hatchery__v1__vm_reply__free_unpacked(rep, NULL);
}

Test(agent_qemu, timeout_kills_a_fork_bomb)
{
	struct agent a = boot();
	/* Forks without end, all in the program's process group, until the
	 * timeout: the agent kills the group again and again (late forks
	 * die too), answers, and the guest is clear. */
	struct result r = exec_run(&a, 1, &(struct run){
		.argv = ARGV("sh", "-c", "b() { b | b & }; b; sleep 100"), .timeout_ms = 3000 });
	cr_assert_eq(r.code, 0, "%s", r.msg);
	cr_assert(r.x.timed_out);
	result_free(&r);
	slow_ping(&a, 2);
	uint64_t deadline = hatch_now_ns() + (uint64_t)t_ms(60000) * 1000000ull;
	for (uint64_t id = 3;; id++) {
		r = exec_run(&a, id, &(struct run){ .argv = ARGV("sh", "-c", "ps -o pid= | wc -l") });
		int n = r.code ? -1 : atoi((char *)r.out);
		result_free(&r);
		if (n >= 0 && n < 100)
			break; /* PID 1, kernel threads, ps and sh */
		cr_assert_lt(hatch_now_ns(), deadline, "%d processes left after the bomb", n);
		usleep(200000);
	}
	slow_ping(&a, 1000);
	qemu_shutdown(&a);
}
