/* init.c - what the agent does as PID 1 (/init of the initramfs) before it
 * serves: the file systems a program expects, the virtio modules the
 * initramfs lists, /dev/hvc0 in raw mode. And the way out when something is
 * fatal: one line on the console, then reboot(RB_AUTOBOOT), which the VMM
 * turns into a clean end of the VM (PID 1 must never exit: that panics).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"
#include "hatchery/cleanup.h"

#define MODULES_LIST "/etc/hatchery/modules"
#define CHANNEL_DEV "/dev/hvc0"
/* The kernel passes unknown name=value words of its command line to init
 * as environment: hatchery_channel=/dev/vport0p1 serves a virtio-serial
 * port instead (test_agent_qemu: QEMU's virtconsole drops what its
 * chardev cannot take at once; a plain port is throttled instead). */
#define CHANNEL_ENV "hatchery_channel"
#define CHANNEL_WAIT_MS 10000

static void vline(const char *prefix, const char *fmt, va_list ap)
{
	char line[640];
	int n = snprintf(line, sizeof(line), "hatchery-agent: %s", prefix);
	if (n < 0)
		return;
	int m = vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
	size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
	if (len > sizeof(line) - 2)
		len = sizeof(line) - 2;
	line[len++] = '\n';
	/* One write: lines from the agent and the kernel do not interleave
	 * mid-line on the console. fd 2 is /dev/console under PID 1. */
	ssize_t w = write(STDERR_FILENO, line, len);
	(void)w;
}

void agent_log(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vline("", fmt, ap);
	va_end(ap);
}

void agent_fatal(bool pid1, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vline("fatal: ", fmt, ap);
	va_end(ap);
	if (!pid1)
		exit(1);
	sync();
	reboot(RB_AUTOBOOT);
	/* Only if the kernel refused: exiting would panic, so wait. */
	for (;;)
		pause();
}

static void mount_or_die(const char *src, const char *dst, const char *type,
			 unsigned long flags, const char *data)
{
	if (mkdir(dst, 0755) < 0 && errno != EEXIST)
		agent_fatal(true, "mkdir %s: %s", dst, strerror(errno));
	/* EBUSY: the kernel mounted it already (devtmpfs.mount=1). */
	if (mount(src, dst, type, flags, data) < 0 && errno != EBUSY)
		agent_fatal(true, "mount %s on %s: %s", type, dst, strerror(errno));
}

/* fds 0-2 on the console: the kernel opens /dev/console for init only if
 * the initramfs has it; without them the Exec pipes would land on 0-2. */
static void std_fds(void)
{
	for (int fd = 0; fd <= 2; fd++) {
		if (fcntl(fd, F_GETFD) >= 0)
			continue;
		int c = open("/dev/console", O_RDWR | O_NOCTTY);
		if (c < 0)
			c = open("/dev/null", O_RDWR);
		if (c >= 0 && c != fd) {
			dup2(c, fd);
			close(c);
		}
	}
}

static void mounts(void)
{
	const unsigned long safe = MS_NOSUID | MS_NODEV | MS_NOEXEC;
	mount_or_die("proc", "/proc", "proc", safe, NULL);
	mount_or_die("sysfs", "/sys", "sysfs", safe, NULL);
	mount_or_die("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755");
	std_fds();
	mount_or_die("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC,
		     "mode=0620,ptmxmode=0666");
	mount_or_die("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777");
	mount_or_die("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777");
	mount_or_die("tmpfs", "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755");
	/* What shells expect of /dev beyond devtmpfs (process substitution,
	 * `cat /dev/stdin`). Failures only cost those. */
	static const char *const links[][2] = {
		{ "/proc/self/fd", "/dev/fd" },     { "/proc/self/fd/0", "/dev/stdin" },
		{ "/proc/self/fd/1", "/dev/stdout" }, { "/proc/self/fd/2", "/dev/stderr" },
	};
	for (size_t i = 0; i < HATCH_ARRAY_SIZE(links); i++)
		if (symlink(links[i][0], links[i][1]) < 0 && errno != EEXIST)
			agent_log("symlink %s: %s", links[i][1], strerror(errno));
}

/* Load the modules MODULES_LIST names, one absolute path a line, in the
 * order written (scripts/initramfs put each after what it depends on).
 * A failure is logged, not fatal: the wait for /dev/hvc0 says what it
 * cost. */
static void modules(void)
{
	FILE *f = fopen(MODULES_LIST, "re");
	if (!f) {
		if (errno != ENOENT)
			agent_log("%s: %s", MODULES_LIST, strerror(errno));
		return;
	}
	char line[512];
	while (fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\r\n")] = '\0';
		if (!line[0] || line[0] == '#')
			continue;
		_cleanup_close_ int fd = open(line, O_RDONLY | O_CLOEXEC);
		if (fd < 0) {
			agent_log("module %s: %s", line, strerror(errno));
			continue;
		}
		/* EEXIST: built in or loaded already. */
		if (syscall(SYS_finit_module, fd, "", 0) < 0 && errno != EEXIST)
			agent_log("finit_module %s: %s", line, strerror(errno));
	}
	fclose(f);
}

static int open_channel(void)
{
	const char *dev = getenv(CHANNEL_ENV);
	if (!dev || dev[0] != '/')
		dev = CHANNEL_DEV;
	/* devtmpfs creates the node when virtio_console registers the port,
	 * asynchronously to the module load: poll for it, bounded. */
	struct timespec tick = { 0, 10 * 1000 * 1000 };
	int fd = -1;
	for (int waited = 0; waited <= CHANNEL_WAIT_MS; waited += 10) {
		fd = open(dev, O_RDWR | O_NOCTTY | O_CLOEXEC);
		if (fd >= 0 || (errno != ENOENT && errno != ENXIO && errno != ENODEV))
			break;
		nanosleep(&tick, NULL);
	}
	if (fd < 0)
		agent_fatal(true, "%s did not appear in %d ms (%s): no virtio-console "
			    "port (modules in %s?)", dev, CHANNEL_WAIT_MS,
			    strerror(errno), MODULES_LIST);
	if (!isatty(fd))
		return fd; /* a virtio-serial port: bytes as they are */
	/* Raw: frames are binary; no echo, no line discipline, no CR/LF
	 * rewriting, no signals from bytes like ^C. */
	struct termios t;
	if (tcgetattr(fd, &t) < 0)
		agent_fatal(true, "tcgetattr %s: %s", dev, strerror(errno));
	cfmakeraw(&t);
	t.c_cflag &= ~(tcflag_t)CRTSCTS;
	t.c_cflag |= CLOCAL | CREAD;
	t.c_cc[VMIN] = 1;
	t.c_cc[VTIME] = 0;
	if (tcsetattr(fd, TCSANOW, &t) < 0)
		agent_fatal(true, "tcsetattr %s: %s", dev, strerror(errno));
	return fd;
}

int agent_init_system(void)
{
	umask(022);
	if (chdir("/") < 0)
		agent_fatal(true, "chdir /: %s", strerror(errno));
	mounts();
	modules();
	return open_channel();
}
