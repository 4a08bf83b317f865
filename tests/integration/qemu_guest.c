/* qemu_guest.c - see qemu_guest.h. Always TCG (about 3 s to boot): it runs
 * where /dev/kvm does not, and QEMU's KVM CPU model failed on nested hosts
 * ("failed to set MSR 0x10a").
 *
 * The agent's port is a virtserialport (/dev/vport0p1, named to the agent
 * with hatchery_channel= on the kernel command line), not a virtconsole
 * (/dev/hvc0): QEMU drops console output its chardev cannot take at once
 * (hw/char/virtio-console.c: consoles are never throttled), which lost
 * ReadFile data when a test read slower than the guest wrote.
 */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "hatchery/clock.h"
#include "qemu_guest.h"
#include "testing.h"

/* Under TCG the guest's TSC is this machine's. Without HPET or an ACPI PM
 * timer (microvm has neither) the kernel calibrates the TSC against the PIT
 * alone, and on a loaded host that failed ("tsc: Unable to calibrate
 * against PIT") and the boot stalled: give it the frequency instead. */
static void tsc_param(char *out, size_t n)
{
	out[0] = '\0';
	FILE *f = fopen("/proc/cpuinfo", "r");
	if (!f)
		return;
	char line[256];
	double mhz = 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "cpu MHz : %lf", &mhz) == 1)
			break;
	fclose(f);
	if (mhz > 100)
		snprintf(out, n, " tsc_early_khz=%u", (unsigned)(mhz * 1000));
}

struct agent qemu_boot(const char *dir, const char *machine, const char *const *extra)
{
	struct agent a = { .fd = -1 };
	if (dir) {
		cr_assert_lt(strlen(dir), sizeof(a.dir));
		strcpy(a.dir, dir);
	} else {
		strcpy(a.dir, "/tmp/test_qemu_guest.XXXXXX");
		cr_assert_not_null(mkdtemp(a.dir));
	}
	char sock[128], serial[128], log[128], chardev[192], tsc[64], cmdline[256];
	tsc_param(tsc, sizeof(tsc));
	snprintf(cmdline, sizeof(cmdline),
		 "console=ttyS0 reboot=k panic=-1 hatchery_channel=/dev/vport0p1%s", tsc);
	snprintf(sock, sizeof(sock), "%s/agent.sock", a.dir);
	snprintf(serial, sizeof(serial), "file:%s/console.log", a.dir);
	snprintf(log, sizeof(log), "%s/qemu.log", a.dir);
	snprintf(chardev, sizeof(chardev), "socket,id=agent,path=%s,server=on,wait=off", sock);
	const char *base[] = { HATCH_QEMU, "-M", machine,
			       "-accel", "tcg", "-cpu", "max", "-m", "512", "-smp", "1",
			       "-kernel", HATCH_DEFAULT_KERNEL, "-initrd", HATCH_DEFAULT_INITRD,
			       "-append", cmdline,
			       "-nodefaults", "-no-reboot", "-display", "none", "-serial", serial,
			       "-device", "virtio-serial-device", "-chardev", chardev,
			       "-device", "virtserialport,chardev=agent" };
	size_t nbase = sizeof(base) / sizeof(base[0]), nextra = 0;
	while (extra && extra[nextra])
		nextra++;
	const char **argv = calloc(nbase + nextra + 1, sizeof(*argv));
	cr_assert_not_null(argv);
	memcpy(argv, base, sizeof(base));
	for (size_t i = 0; i < nextra; i++)
		argv[nbase + i] = extra[i];
	a.pid = fork();
	cr_assert_geq(a.pid, 0);
	if (a.pid == 0) {
		int in = open("/dev/null", O_RDONLY);
		int out = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (in < 0 || out < 0 || dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(out, 2) < 0)
			_exit(126);
		setpgid(0, 0); /* no terminal signals from the test's session */
		/* A failed assertion ends the test's process: QEMU with it. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		execv(HATCH_QEMU, (char *const *)argv);
		_exit(127);
	}
	free(argv);
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	cr_assert_lt(strlen(sock), sizeof(sa.sun_path));
	memcpy(sa.sun_path, sock, strlen(sock) + 1);
	uint64_t deadline = hatch_now_ns() + (uint64_t)t_ms(20000) * 1000000ull;
	a.fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	while (connect(a.fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		cr_assert_lt(hatch_now_ns(), deadline, "QEMU made no %s", sock);
		cr_assert_eq(waitpid(a.pid, NULL, WNOHANG), 0, "QEMU ended (see %s)", log);
		usleep(20000);
	}
	Reply *r = recv_reply_ms(&a, 60000);
	cr_assert_not_null(r, "the agent never said ready (console: %s/console.log)", a.dir);
	cr_assert_eq(r->body_case, HATCHERY__V1__VM_REPLY__BODY_AGENT_READY);
	cr_assert_str_eq(r->agent_ready->kernel_release, HATCH_KERNEL_RELEASE);
	cr_assert_eq(r->agent_ready->nproc, 1);
	hatchery__v1__vm_reply__free_unpacked(r, NULL);
	return a;
}

void qemu_shutdown(struct agent *a)
{
	close(a->fd);
	kill(a->pid, SIGKILL);
	waitpid(a->pid, NULL, 0);
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", a->dir);
	cr_assert_eq(system(cmd), 0);
}
