/* iobench.c - hatch-iobench: 4 KiB random reads or writes on a block
 * device, in a Linux guest (the initramfs's /bin/hatch-iobench; measurement
 * 16 runs it through Exec).
 *
 *   hatch-iobench DEV randread|randwrite QD COUNT [RANGE_MIB]
 *
 * Opens DEV with O_DIRECT (the guest's page cache out of the way: every
 * I/O reaches the virtio-blk device), then issues COUNT 4 KiB I/Os at
 * offsets drawn uniformly from the first RANGE_MIB MiB of it (default: the
 * whole device), 4 KiB aligned, QD at a time: QD 1 with pread/pwrite, more
 * with Linux AIO (io_setup/io_submit/io_getevents as raw syscalls, so no
 * libaio in the initramfs), keeping QD in flight until COUNT are issued.
 * Each I/O's latency is submit -> completion seen. One line on stdout:
 *
 *   iobench op=randread qd=32 n=2000 secs=0.51 iops=3921 p50_us=7800 p99_us=9100 max_us=12000
 *
 * Exit status 0, or 1 with the reason on stderr. Static (gcc -static): the
 * initramfs carries no libraries.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/aio_abi.h>
#include <linux/fs.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define BS 4096u
#define MAX_QD 256u

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint64_t next_block(uint64_t blocks)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng % blocks;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* Nearest rank, as the bench's samples.c. */
static uint64_t pct(const uint64_t *v, size_t n, double p)
{
	if (n == 0)
		return 0;
	size_t k = (size_t)((p / 100.0) * (double)n + 0.999999);
	if (k < 1)
		k = 1;
	return v[k > n ? n - 1 : k - 1];
}

static int fail(const char *what)
{
	fprintf(stderr, "hatch-iobench: %s: %s\n", what, strerror(errno));
	return 1;
}

static int run_sync(int fd, bool wr, uint8_t *buf, uint64_t blocks, uint64_t *lat, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		off_t off = (off_t)(next_block(blocks) * BS);
		uint64_t t0 = now_ns();
		ssize_t r = wr ? pwrite(fd, buf, BS, off) : pread(fd, buf, BS, off);
		lat[i] = now_ns() - t0;
		if (r != (ssize_t)BS) {
			if (r >= 0)
				errno = EIO;
			return fail(wr ? "pwrite" : "pread");
		}
	}
	return 0;
}

static int run_aio(int fd, bool wr, uint8_t *bufs, unsigned qd, uint64_t blocks,
		   uint64_t *lat, size_t n)
{
	aio_context_t ctx = 0;
	if (syscall(SYS_io_setup, qd, &ctx) < 0)
		return fail("io_setup");
	struct iocb cb[MAX_QD];
	struct iocb *cbp[MAX_QD];
	uint64_t t0[MAX_QD];
	struct io_event ev[MAX_QD];
	size_t issued = 0, done = 0;
	unsigned free_n = qd, free_slots[MAX_QD];
	for (unsigned i = 0; i < qd; i++)
		free_slots[i] = i;
	int rc = 0;
	while (done < n) {
		/* Refill: every free slot gets a fresh I/O, one io_submit. */
		unsigned k = 0;
		while (free_n > 0 && issued + k < n) {
			unsigned s = free_slots[--free_n];
			memset(&cb[s], 0, sizeof(cb[s]));
			cb[s].aio_data = s;
			cb[s].aio_lio_opcode = wr ? IOCB_CMD_PWRITE : IOCB_CMD_PREAD;
			cb[s].aio_fildes = (uint32_t)fd;
			cb[s].aio_buf = (uint64_t)(uintptr_t)(bufs + (size_t)s * BS);
			cb[s].aio_nbytes = BS;
			cb[s].aio_offset = (int64_t)(next_block(blocks) * BS);
			cbp[k++] = &cb[s];
		}
		if (k > 0) {
			uint64_t t = now_ns();
			for (unsigned i = 0; i < k; i++)
				t0[cbp[i]->aio_data] = t;
			long r = syscall(SYS_io_submit, ctx, (long)k, cbp);
			if (r != (long)k) {
				if (r >= 0)
					errno = EAGAIN;
				rc = fail("io_submit");
				break;
			}
			issued += k;
		}
		long got = syscall(SYS_io_getevents, ctx, 1L, (long)qd, ev, NULL);
		if (got < 0) {
			if (errno == EINTR)
				continue;
			rc = fail("io_getevents");
			break;
		}
		uint64_t t = now_ns();
		for (long i = 0; i < got; i++) {
			unsigned s = (unsigned)ev[i].data;
			if (ev[i].res != (int64_t)BS) {
				errno = ev[i].res < 0 ? (int)-ev[i].res : EIO;
				rc = fail(wr ? "aio write" : "aio read");
				break;
			}
			lat[done++] = t - t0[s];
			free_slots[free_n++] = s;
		}
		if (rc)
			break;
	}
	syscall(SYS_io_destroy, ctx);
	return rc;
}

int main(int argc, char **argv)
{
	if (argc < 5 || argc > 6) {
		fprintf(stderr, "usage: hatch-iobench DEV randread|randwrite QD COUNT [RANGE_MIB]\n");
		return 2;
	}
	bool wr = strcmp(argv[2], "randwrite") == 0;
	if (!wr && strcmp(argv[2], "randread") != 0) {
		fprintf(stderr, "hatch-iobench: randread or randwrite, not %s\n", argv[2]);
		return 2;
	}
	unsigned long qd = strtoul(argv[3], NULL, 10);
	unsigned long long n = strtoull(argv[4], NULL, 10);
	unsigned long long range_mib = argc == 6 ? strtoull(argv[5], NULL, 10) : 0;
	if (qd < 1 || qd > MAX_QD || n < 1 || n > 100000000ull) {
		fprintf(stderr, "hatch-iobench: QD 1..%u, COUNT 1..1e8\n", MAX_QD);
		return 2;
	}
	int fd = open(argv[1], (wr ? O_RDWR : O_RDONLY) | O_DIRECT | O_CLOEXEC);
	if (fd < 0)
		return fail(argv[1]);
	/* A regular file too: the same run on the host, to compare. */
	uint64_t size = 0;
	struct stat st;
	if (fstat(fd, &st) < 0)
		return fail("fstat");
	if (S_ISREG(st.st_mode))
		size = (uint64_t)st.st_size;
	else if (ioctl(fd, BLKGETSIZE64, &size) < 0)
		return fail("BLKGETSIZE64");
	if (range_mib && range_mib << 20 < size)
		size = range_mib << 20;
	uint64_t blocks = size / BS;
	if (blocks == 0) {
		fprintf(stderr, "hatch-iobench: %s: smaller than 4 KiB\n", argv[1]);
		return 1;
	}
	uint8_t *bufs = NULL;
	if (posix_memalign((void **)&bufs, BS, (size_t)qd * BS) != 0)
		return fail("posix_memalign");
	/* Not zeros (a backend could special-case them), not compressible. */
	for (size_t i = 0; i < (size_t)qd * BS; i++)
		bufs[i] = (uint8_t)(next_block(251) + 1);
	uint64_t *lat = malloc((size_t)n * sizeof(*lat));
	if (!lat)
		return fail("malloc");
	uint64_t start = now_ns();
	int rc = qd == 1 ? run_sync(fd, wr, bufs, blocks, lat, (size_t)n)
			 : run_aio(fd, wr, bufs, (unsigned)qd, blocks, lat, (size_t)n);
	double secs = (double)(now_ns() - start) / 1e9;
	if (rc)
		return rc;
	if (wr && fdatasync(fd) < 0)
		return fail("fdatasync");
	qsort(lat, (size_t)n, sizeof(*lat), cmp_u64);
	printf("iobench op=%s qd=%lu n=%llu secs=%.3f iops=%.0f p50_us=%.1f p99_us=%.1f "
	       "max_us=%.1f\n",
	       argv[2], qd, n, secs, secs > 0 ? (double)n / secs : 0,
	       (double)pct(lat, (size_t)n, 50) / 1e3, (double)pct(lat, (size_t)n, 99) / 1e3,
	       (double)lat[n - 1] / 1e3);
	return 0;
}
