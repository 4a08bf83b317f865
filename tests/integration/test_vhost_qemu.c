/* test_vhost_qemu.c - hatchery-vhost-blk against a frontend that is not
 * ours: QEMU's vhost-user-blk-pci. QEMU does the whole device-side
 * handshake while it realizes the device, before any guest code runs
 * (GET_FEATURES, GET/SET_PROTOCOL_FEATURES, GET_QUEUE_NUM,
 * GET_MAX_MEM_SLOTS, SET_OWNER, SET_VRING_CALL/ERR, GET_CONFIG), and fails
 * to start if any answer does not suit it. So: QEMU started paused (-S,
 * TCG, no guest code runs), told to quit over QMP once it is up; both
 * must exit 0. The rings and requests are test_vhost_e2e's business.
 *
 * Registered only when CMake found qemu-system-x86_64.
 */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "testing.h"

TestSuite(vhost_qemu, .timeout = 60);

static pid_t spawn(const char *const argv[], int stdin_fd, int out_fd)
{
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		if (stdin_fd >= 0)
			dup2(stdin_fd, 0);
		if (out_fd >= 0) { /* and stdout: QMP's answers */
			dup2(out_fd, 1);
			dup2(out_fd, 2);
		}
		execv(argv[0], (char *const *)argv); /* execv does not write them */
		_exit(127);
	}
	return pid;
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

static void wait_path(const char *path, unsigned ms)
{
	struct stat st;
	for (unsigned waited = 0; waited < ms; waited += 10) {
		if (stat(path, &st) == 0)
			return;
		nanosleep(&(struct timespec){ 0, 10 * 1000 * 1000 }, NULL);
	}
	cr_assert_fail("%s never appeared", path);
}

static void dump(const char *what, int fd)
{
	char buf[4096];
	ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
	if (n > 0) {
		buf[n] = '\0';
		fprintf(stderr, "--- %s:\n%s", what, buf);
	}
}

static void run(bool ro)
{
	char dir[] = "/tmp/test_vhost_qemu.XXXXXX";
	cr_assert_not_null(mkdtemp(dir));
	char img[64], sock[64], log[64], chardev[96];
	snprintf(img, sizeof(img), "%s/disk.img", dir);
	snprintf(sock, sizeof(sock), "%s/blk.sock", dir);
	snprintf(log, sizeof(log), "%s/log", dir);
	snprintf(chardev, sizeof(chardev), "socket,id=c0,path=%s", sock);
	int fd = open(img, O_CREAT | O_RDWR | O_CLOEXEC, 0600);
	cr_assert_eq(ftruncate(fd, 16 << 20), 0);
	close(fd);
	int logfd = open(log, O_CREAT | O_RDWR | O_CLOEXEC, 0600);

	const char *bargv[] = { HATCH_VHOST_BLK_PATH, "--socket", sock, "--image", img,
			  ro ? "--read-only" : NULL, NULL };
	pid_t backend = spawn(bargv, -1, logfd);
	wait_path(sock, t_ms(5000));

	int in[2];
	cr_assert_eq(pipe2(in, O_CLOEXEC), 0);
	const char *qargv[] = { HATCH_QEMU, "-machine", "q35,accel=tcg", "-S", "-nodefaults",
			  "-display", "none", "-m", "64",
			  "-object", "memory-backend-memfd,id=mem0,size=64M,share=on",
			  "-numa", "node,memdev=mem0", "-chardev", chardev,
			  "-device", "vhost-user-blk-pci,chardev=c0,num-queues=1",
			  "-qmp", "stdio", NULL };
	pid_t qemu = spawn(qargv, in[0], logfd);
	close(in[0]);
	const char *cmds = "{\"execute\":\"qmp_capabilities\"}\n{\"execute\":\"quit\"}\n";
	cr_assert_eq(write(in[1], cmds, strlen(cmds)), (ssize_t)strlen(cmds));
	int qrc = wait_for(qemu, t_ms(30000));
	close(in[1]);
	int brc = wait_for(backend, t_ms(5000));
	if (qrc != 0 || brc != 0)
		dump("qemu and backend output", logfd);
	cr_expect_eq(qrc, 0, "QEMU realized the device and quit");
	cr_expect_eq(brc, 0, "the backend saw the frontend hang up");
	close(logfd);
	unlink(log);
	unlink(img);
	unlink(sock);
	rmdir(dir);
}

Test(vhost_qemu, handshake)
{
	run(false);
}

Test(vhost_qemu, handshake_read_only)
{
	run(true);
}
