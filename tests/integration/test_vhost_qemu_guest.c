/* test_vhost_qemu_guest.c - a Linux guest in QEMU uses a disk that
 * hatchery-vhost-blk serves: our backend under a frontend that is not ours,
 * past the handshake (test_vhost_qemu) to the rings and requests.
 *
 * QEMU 7.2 (TCG, microvm with ACPI, as qemu_guest.c boots the build's kernel
 * and initramfs) with guest RAM in a shared memfd, and `-device
 * vhost-user-blk` on a virtio-mmio slot (modern: force-legacy=false) whose
 * chardev is the socket of `hatchery-vhost-blk --socket S --image IMG`,
 * started by the test. IMG is ext4 made on the host with mkfs.ext4 -d
 * (holding one file). Through the agent the guest mounts /dev/vda, reads
 * the host's file, writes 4 MiB from /dev/urandom, syncs and unmounts;
 * mounts again (the page cache is gone with the unmount, so the bytes come
 * from the backend) and takes their sha256. On the host, after QEMU is
 * gone and the backend has exited 0: debugfs's copy of the file has that
 * sha256, and e2fsck -fn finds the file system clean.
 *
 * Registered only when CMake found qemu-system-x86_64 and a kernel (as
 * test_agent_qemu); skipped loudly without mkfs.ext4 (e2fsprogs, which
 * has debugfs and e2fsck too).
 */
#include <fcntl.h>
#include <stdbool.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "qemu_guest.h"
#include "testing.h"

TestSuite(vhost_qemu_guest, .timeout = 180);

#define HELLO "hello from the host's mkfs.ext4 -d\n"

/* An ext4 image of 64 MiB at dir/disk.img holding /hello.txt. */
static void make_image(const char *dir, char *img, size_t cap)
{
	char tree[96], p[128], cmd[512];
	snprintf(tree, sizeof(tree), "%s/tree", dir);
	cr_assert_eq(mkdir(tree, 0700), 0);
	snprintf(p, sizeof(p), "%s/hello.txt", tree);
	FILE *f = fopen(p, "w");
	cr_assert_not_null(f);
	fputs(HELLO, f);
	fclose(f);
	snprintf(img, cap, "%s/disk.img", dir);
	snprintf(cmd, sizeof(cmd),
		 "truncate -s 64M %s && mkfs.ext4 -q -F -d %s %s >/dev/null 2>&1 && rm -r %s",
		 img, tree, img, tree);
	if (system(cmd) != 0)
		t_skip("mkfs.ext4 -d failed (e2fsprogs; scripts/deps)");
}

/* Exit status, or -1 after SIGKILL at the deadline. */
static int wait_for(pid_t pid, unsigned ms)
{
	int st;
	for (unsigned waited = 0; waited < ms; waited += 10) {
		pid_t r = waitpid(pid, &st, WNOHANG);
		if (r == pid)
			return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
		nanosleep(&(struct timespec){ 0, 10 * 1000 * 1000 }, NULL);
	}
	kill(pid, SIGKILL);
	waitpid(pid, &st, 0);
	return -1;
}

/* A shell command's first line of output, "" if none. */
static void first_line(const char *cmd, char *out, size_t cap)
{
	out[0] = '\0';
	FILE *f = popen(cmd, "r");
	cr_assert_not_null(f);
	if (!fgets(out, (int)cap, f))
		out[0] = '\0';
	pclose(f);
}

Test(vhost_qemu_guest, ext4_write_read_back)
{
	char dir[] = "/tmp/test_vhost_qemu_guest.XXXXXX";
	cr_assert_not_null(mkdtemp(dir));
	char img[128], sock[128], log[128], chardev[192];
	make_image(dir, img, sizeof(img));
	snprintf(sock, sizeof(sock), "%s/blk.sock", dir);
	snprintf(log, sizeof(log), "%s/backend.log", dir);
	snprintf(chardev, sizeof(chardev), "socket,id=blk,path=%s", sock);

	pid_t backend = fork();
	cr_assert_geq(backend, 0);
	if (backend == 0) {
		int out = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (out < 0 || dup2(out, 1) < 0 || dup2(out, 2) < 0)
			_exit(126);
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		execl(HATCH_VHOST_BLK_PATH, "hatchery-vhost-blk", "--socket", sock, "--image",
		      img, (char *)NULL);
		_exit(127);
	}
	struct stat st;
	for (unsigned waited = 0; stat(sock, &st) != 0; waited += 10) {
		cr_assert_lt(waited, t_ms(5000), "the backend made no %s (see %s)", sock, log);
		usleep(10000);
	}

	const char *extra[] = { "-object", "memory-backend-memfd,id=mem,size=512M,share=on",
				"-global", "virtio-mmio.force-legacy=false",
				"-chardev", chardev,
				"-device", "vhost-user-blk,chardev=blk,num-queues=1", NULL };
	struct agent a = qemu_boot(dir, "microvm,acpi=on,rtc=on,memory-backend=mem", extra);

	struct result r = sh_ok(&a, 1, "mount -t ext4 /dev/vda /mnt && cat /mnt/hello.txt");
	cr_assert_str_eq((char *)r.out, HELLO, "the host's file, read in the guest");
	result_free(&r);
	r = sh_ok(&a, 2, "head -c 4194304 /dev/urandom > /mnt/data && sync && umount /mnt");
	result_free(&r);
	r = sh_ok(&a, 3, "mount -t ext4 /dev/vda /mnt && sha256sum /mnt/data && umount /mnt");
	char guest_sum[65];
	cr_assert_eq(sscanf((char *)r.out, "%64[0-9a-f]  /mnt/data", guest_sum), 1, "%s", r.out);
	result_free(&r);

	/* QEMU gone: the backend saw its frontend hang up and exits 0. */
	a.dir[0] = '\0'; /* the test removes dir itself, after the host's checks */
	close(a.fd);
	kill(a.pid, SIGKILL);
	waitpid(a.pid, NULL, 0);
	int brc = wait_for(backend, t_ms(10000));

	char cmd[512], host_sum[128];
	snprintf(cmd, sizeof(cmd), "debugfs -R 'cat /data' %s 2>/dev/null | sha256sum", img);
	first_line(cmd, host_sum, sizeof(host_sum));
	bool same = strncmp(host_sum, guest_sum, 64) == 0;
	snprintf(cmd, sizeof(cmd), "e2fsck -fn %s >%s/fsck.log 2>&1", img, dir);
	int fsck = system(cmd);
	if (brc == 0 && same && fsck == 0) { /* else the dir stays, as evidence */
		snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
		cr_assert_eq(system(cmd), 0);
	}
	cr_expect_eq(brc, 0, "the backend's exit status (see %s)", log);
	cr_expect(same, "guest's sha256 %s, the image's (debugfs) %.64s", guest_sum, host_sum);
	cr_expect_eq(fsck, 0, "e2fsck -fn of the image: see %s/fsck.log", dir);
}
