/* linux_boot.c - boot a stock Linux bzImage in hatchery's VMM and report
 * how it ended. A tool for people (and for scripts/vm runs), not a ctest
 * entry: /dev/kvm must be able to run a Linux kernel (kvm-pvm cannot; the
 * nested KVM inside scripts/vm can).
 *
 *   linux_boot [-c CPUS] [-m MIB] [-n NVIRTIO] [-a CMDLINE] [-A EXTRA]
 *              [-t SECS] [-q] [-p] [KERNEL [INITRD]]
 *
 * KERNEL defaults to the Debian kernel scripts/vm unpacked
 * (~/.cache/hatchery/vm/linux-image-*\/boot/vmlinuz-*), INITRD to the test
 * initramfs built beside this binary (linux_init.c). The console is copied
 * to stdout as it comes (-q: only its last lines at the end). Exit 0 when
 * the guest printed its marker (with -p: panicked) and then reset itself;
 * 1 otherwise. */
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "devices/bus.h"
#include "devices/i8042.h"
#include "devices/uart.h"
#include "hatchery/clock.h"
#include "kvm/kvm.h"
#include "linux/boot.h"
#include "linux/vcpus.h"
#include "vmproc.h"

static int read_all(const char *path, uint8_t **buf, size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	struct stat st;
	if (fstat(fd, &st) < 0 || st.st_size <= 0) {
		close(fd);
		return -EINVAL;
	}
	*buf = malloc((size_t)st.st_size);
	size_t got = 0;
	while (*buf && got < (size_t)st.st_size) {
		ssize_t n = read(fd, *buf + got, (size_t)st.st_size - got);
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	close(fd);
	if (!*buf || got != (size_t)st.st_size)
		return -EIO;
	*len = got;
	return 0;
}

static void usage(void)
{
	fprintf(stderr, "usage: linux_boot [-c CPUS] [-m MIB] [-n NVIRTIO] [-a CMDLINE] "
			"[-A EXTRA] [-t SECS] [-q] [-p] [KERNEL [INITRD]]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	unsigned cpus = 2, mib = 256, nvirtio = 1, secs = 120;
	const char *cmdline = VMP_LINUX_CMDLINE_DEFAULT, *extra = NULL;
	int quiet = 0, want_panic = 0, o;
	while ((o = getopt(argc, argv, "c:m:n:a:A:t:qp")) != -1) {
		switch (o) {
		case 'c': cpus = (unsigned)atoi(optarg); break;
		case 'm': mib = (unsigned)atoi(optarg); break;
		case 'n': nvirtio = (unsigned)atoi(optarg); break;
		case 'a': cmdline = optarg; break;
		case 'A': extra = optarg; break;
		case 't': secs = (unsigned)atoi(optarg); break;
		case 'q': quiet = 1; break;
		case 'p': want_panic = 1; break;
		default: usage();
		}
	}
	const char *kpath = optind < argc ? argv[optind] : NULL;
	const char *ipath = optind + 1 < argc ? argv[optind + 1] : HATCH_LINUX_TEST_INITRD;
	glob_t g = { 0 };
	if (!kpath) {
		const char *home = getenv("HOME");
		char pat[512];
		snprintf(pat, sizeof(pat), "%s/.cache/hatchery/vm/linux-image-*/boot/vmlinuz-*",
			 home ? home : "/root");
		if (glob(pat, 0, NULL, &g) != 0 || g.gl_pathc == 0) {
			fprintf(stderr, "linux_boot: no kernel at %s (run scripts/vm once)\n", pat);
			return 1;
		}
		kpath = g.gl_pathv[g.gl_pathc - 1];
	}
	char full_cmdline[VMP_LINUX_CMDLINE_MAX];
	snprintf(full_cmdline, sizeof(full_cmdline), "%s%s%s%s", cmdline,
		 extra ? " " : "", extra ? extra : "", want_panic ? " hatch_test=panic" : "");

	struct vmp_linux_boot b = { .cmdline = full_cmdline, .nvirtio = nvirtio };
	uint8_t *kbuf = NULL, *ibuf = NULL;
	int r = read_all(kpath, &kbuf, &b.kernel_len);
	if (r < 0) {
		fprintf(stderr, "linux_boot: %s: %s\n", kpath, strerror(-r));
		return 1;
	}
	r = read_all(ipath, &ibuf, &b.initrd_len);
	if (r < 0) {
		fprintf(stderr, "linux_boot: %s: %s\n", ipath, strerror(-r));
		return 1;
	}
	b.kernel = kbuf;
	b.initrd = ibuf;

	struct hatch_err err = { 0 };
	struct vmp_kvm_host h;
	struct vmp_vm vm;
	struct vmp_linux_layout l;
	struct vmp_bus *bus = NULL;
	struct vmp_uart *uart = NULL;
	struct vmp_vcpus *vc = NULL;
	uint64_t t0 = hatch_now_ns();
	if (vmp_kvm_host_open(&h, "/dev/kvm", &err) < 0 ||
	    vmp_vm_create(&h, (size_t)mib << 20, cpus, &vm, &err) < 0 ||
	    vmp_linux_cpu_init(&vm, h.cpuid, &err) < 0 ||
	    vmp_linux_load(&vm, &b, &l, &err) < 0 ||
	    vmp_bus_create(&bus, &err) < 0 ||
	    vmp_uart_create(bus, vm.vm_fd, VMP_UART_COM1_BASE, VMP_UART_COM1_IRQ, &uart, &err) < 0 ||
	    vmp_i8042_attach(bus, &err) < 0 ||
	    vmp_vcpus_signal_init(&err) < 0 ||
	    vmp_vcpus_create(&vm, bus, &vc, &err) < 0) {
		fprintf(stderr, "linux_boot: %s\n", err.msg);
		return 1;
	}
	uint64_t t1 = hatch_now_ns();
	printf("linux_boot: %s (protocol %u.%02u), %u vCPUs, %u MiB, %u virtio; kernel %#llx..%#llx, "
	       "initrd %#llx+%llu, entry %#llx; built in %.1f ms\n"
	       "linux_boot: command line: %s\n",
	       kpath, l.bz.version >> 8, l.bz.version & 0xff, cpus, mib, nvirtio,
	       (unsigned long long)l.kernel, (unsigned long long)l.kernel_end,
	       (unsigned long long)l.initrd, (unsigned long long)l.initrd_size,
	       (unsigned long long)l.entry, (t1 - t0) / 1e6, full_cmdline);
	fflush(stdout);
	if (!quiet)
		vmp_uart_set_echo(uart, STDOUT_FILENO);

	uint64_t t2 = hatch_now_ns();
	vmp_vcpus_start(vc);
	struct pollfd p = { .fd = vmp_vcpus_eventfd(vc), .events = POLLIN };
	/* Wake every 10 ms to note when init's marker reaches the console:
	 * the boot time as the host sees it, decompressor included. */
	uint64_t deadline = t2 + (uint64_t)secs * 1000000000ull, marker_ns = 0;
	int pr = 0;
	while (hatch_now_ns() < deadline) {
		pr = poll(&p, 1, 10);
		if (pr < 0 && errno != EINTR)
			break;
		if (!marker_ns) {
			char last[512];
			vmp_uart_tail(uart, 3, last, sizeof(last));
			if (strstr(last, "HATCH_BOOT_MARKER"))
				marker_ns = hatch_now_ns() - t2;
		}
		if (pr > 0)
			break;
	}
	if (pr <= 0)
		printf("linux_boot: no end after %u s: stopping the VM\n", secs);
	vmp_vcpus_stop(vc);
	uint64_t t3 = hatch_now_ns();

	char msg[HATCH_ERR_MSG_MAX];
	enum vmp_vm_end end = vmp_vcpus_end(vc, msg, sizeof(msg));
	static char tail[VMP_UART_RING + 1];
	vmp_uart_tail(uart, 400, tail, sizeof(tail));
	if (quiet) {
		char last[4096];
		vmp_uart_tail(uart, 40, last, sizeof(last));
		printf("---- console (last 40 lines) ----\n%s\n---- end of console ----\n", last);
	}
	struct vmp_bus_stats st;
	vmp_bus_stats(bus, &st);
	uint64_t written, dropped;
	vmp_uart_counts(uart, &written, &dropped);
	if (marker_ns)
		printf("linux_boot: init's marker on the console %.3f s after the vCPUs started\n",
		       marker_ns / 1e9);
	printf("linux_boot: VM ended (%s): %s\n"
	       "linux_boot: ran %.3f s; %llu exits; console %llu bytes (%llu dropped); "
	       "unclaimed I/O: %llu reads, %llu writes (last %s %#llx)\n",
	       vmp_vm_end_name(end), msg, (t3 - t2) / 1e9,
	       (unsigned long long)vmp_vcpus_exits(vc), (unsigned long long)written,
	       (unsigned long long)dropped, (unsigned long long)st.unknown_reads,
	       (unsigned long long)st.unknown_writes,
	       st.last_unknown_space == VMP_BUS_PIO ? "port" : "MMIO",
	       (unsigned long long)st.last_unknown_addr);

	bool ok = end == VMP_VM_RESET &&
		  (want_panic ? strstr(tail, "Attempted to kill init") != NULL
			      : strstr(tail, "HATCH_BOOT_MARKER cpus_online") != NULL);
	printf("linux_boot: %s\n", ok ? "OK" : "FAILED");
	vmp_vcpus_destroy(vc);
	vmp_uart_destroy(uart);
	vmp_bus_destroy(bus);
	vmp_vm_destroy(&vm);
	vmp_kvm_host_close(&h);
	free(kbuf);
	free(ibuf);
	globfree(&g);
	return ok ? 0 : 1;
}
