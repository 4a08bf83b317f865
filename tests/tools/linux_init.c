/* linux_init.c - /init of linux_boot's test initramfs (static, no libc
 * beyond glibc's static one). It reports what the VMM's machine looked
 * like to a stock kernel on one marker line, then reboots, which under
 * reboot=k ends the VM through the i8042. With `hatch_test=panic` on the
 * command line it exits instead: the kernel panics ("Attempted to kill
 * init") and, with panic=1, resets the VM the same way. */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <termios.h>
#include <unistd.h>

static void slurp(const char *path, char *buf, size_t cap)
{
	buf[0] = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		snprintf(buf, cap, "?");
		return;
	}
	ssize_t n = read(fd, buf, cap - 1);
	close(fd);
	buf[n > 0 ? n : 0] = 0;
	buf[strcspn(buf, "\n")] = 0;
}

int main(void)
{
	mount("proc", "/proc", "proc", 0, NULL);
	mount("sysfs", "/sys", "sysfs", 0, NULL);
	mount("devtmpfs", "/dev", "devtmpfs", 0, NULL);
	int fd = open("/dev/console", O_WRONLY | O_NOCTTY);
	if (fd >= 0) {
		dup2(fd, 1);
		dup2(fd, 2);
	} else {
		/* Say why through the kernel's log, which reaches the UART by
		 * polling even when the tty cannot be opened. */
		char m[128];
		int n = snprintf(m, sizeof(m), "<2>HATCH_BOOT_INIT: open /dev/console: %m\n");
		int k = open("/dev/kmsg", O_WRONLY);
		if (k >= 0 && write(k, m, (size_t)n) < 0)
			close(k);
	}

	char online[64], uptime[64], cmdline[1024], meminfo[256];
	slurp("/sys/devices/system/cpu/online", online, sizeof(online));
	slurp("/proc/uptime", uptime, sizeof(uptime));
	slurp("/proc/cmdline", cmdline, sizeof(cmdline));
	uptime[strcspn(uptime, " ")] = 0;
	slurp("/proc/meminfo", meminfo, sizeof(meminfo)); /* "MemTotal:  N kB" */
	const char *mem = meminfo + strcspn(meminfo, "0123456789");
	int lnro = 0;
	DIR *d = opendir("/sys/bus/platform/devices");
	if (d) {
		struct dirent *e;
		while ((e = readdir(d)))
			lnro += strncmp(e->d_name, "LNRO0005:", 9) == 0;
		closedir(d);
	}
	const char *dev0 = access("/sys/bus/platform/devices/LNRO0005:00", F_OK) == 0 ?
				   "present" : "absent";
	printf("HATCH_BOOT_MARKER cpus_online=%s LNRO0005:00=%s LNRO0005_devices=%d uptime=%ss "
	       "MemTotal=%s\n", online, dev0, lnro, uptime, mem);
	fflush(stdout);
	/* Until the UART has sent it: reboot() does not wait for the tty's
	 * buffer (and this also proves the THR-empty interrupt works). */
	tcdrain(1);
	if (strstr(cmdline, "hatch_test=panic")) {
		printf("HATCH_BOOT_MARKER init exits: expect a panic\n");
		fflush(stdout);
		tcdrain(1);
		return 1;
	}
	reboot(RB_AUTOBOOT); /* LINUX_REBOOT_CMD_RESTART */
	printf("HATCH_BOOT_MARKER reboot returned\n");
	for (;;)
		pause();
}
