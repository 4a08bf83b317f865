/* main.c - hatcheryd: parse arguments, load the config, probe /dev/kvm,
 * then hand over to the event loop. Everything that can be checked before
 * the first fork is checked here, so that a machine that cannot run the
 * configuration fails at start-up with one clear message. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "assets.h"
#include "cgroup.h"
#include "config.h"
#include "hatchery/cleanup.h"
#include "hatchery/v1/common.pb-c.h"
#include "server.h"
#include "vmproc.h"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: hatcheryd -c CONFIG [--socket PATH] [--kvm PATH | --kvm-fd N]\n"
		"                 [--no-jail] [-v]\n"
		"       hatcheryd --probe-linux [--kvm PATH | --kvm-fd N]\n"
		"       hatcheryd --check-config -c CONFIG\n"
		"\n"
		"  -c, --config FILE   INI configuration (see README.md)\n"
		"  -s, --socket PATH   listen here instead of [supervisor] socket\n"
		"      --kvm PATH      KVM device (default /dev/kvm)\n"
		"      --kvm-fd N      use inherited fd N, already open on the KVM device\n"
		"                      (for a uid that may not open it itself)\n"
		"      --no-jail       DEBUG ONLY: children run unjailed, as we do\n"
		"  -v, --verbose       log every spawn, lease and client\n"
		"      --probe-linux   say whether this host's KVM can boot a Linux guest\n"
		"                      (kind = linux) and exit 0 (yes) or 1 (no)\n"
		"      --check-config  parse CONFIG and check the files it names (guest,\n"
		"                      kernel, initrd, snapshot) without KVM; exit 0 or 1\n"
		"  -h, --help\n"
		"\n"
		"Exits 0 after SIGTERM/SIGINT once every child is reaped; 1 when\n"
		"the configuration or the machine cannot be used.\n");
}

/* Everything the jail needs that can be checked before the first fork:
 * with root, a free uid range and an empty bounding set; without root, a
 * kernel that gives us a user namespace per child; cgroup v2 (or cgroup =
 * optional) and the seccomp filters, compiled once here. */
static int start_jail(const struct sup_config *cfg, bool no_jail, bool rootless,
		      struct vmp_jail_filter (*filters)[VMP_SECCOMP__N], struct sup_cgroup *cg,
		      struct hatch_err *err)
{
	if (no_jail) {
		fprintf(stderr,
			"hatcheryd: WARNING: --no-jail: children run WITHOUT the jail "
			"(no namespaces, no seccomp, no uid drop, no cgroup): as %s, "
			"with the host filesystem. A guest that escapes into vmproc "
			"owns %s. For debugging and benchmarks only.\n",
			rootless ? "our own uid" : "root",
			rootless ? "this uid" : "this machine");
		snprintf(cg->reason, sizeof(cg->reason), "--no-jail");
		return 0;
	}
	if (rootless) {
		/* A disk backend is jailed as a uid of its own, which only
		 * root can give it. */
		for (size_t i = 0; i < cfg->n_pools; i++)
			if (cfg->pools[i].disk[0])
				return hatch_err_set(err, HATCHERY__V1__ERROR_CODE__INVALID_ARGUMENT,
						     0, "[pool \"%s\"] disk: needs hatcheryd to run "
						     "as root (each VM's disk backend is jailed as a "
						     "uid of its own)", cfg->pools[i].name);
		if (vmp_jail_probe_rootless(err) < 0)
			return -1;
		fprintf(stderr,
			"hatcheryd: running without root: each child gets a user "
			"namespace too, and all of them run as uid %u (no per-child "
			"uids without root; jail_uid_base is not used). Siblings are "
			"kept apart by their pid namespaces and seccomp: see "
			"docs/security.md, \"Rootless\".\n", (unsigned)geteuid());
	} else {
		/* Once here instead of in every child (jail.h says why). */
		if (vmp_jail_drop_bounding(err) < 0)
			return -1;
		unsigned n = sup_config_jail_slots(cfg);
		if (sup_jail_check_uids(cfg->jail_uid_base, n, err) < 0)
			return -1;
	}
	if (sup_cgroup_setup(cg, cfg, err) < 0)
		return rootless ? hatch_err_wrap(err, "running without root (uid %u), "
						 "cgroup_root must be a cgroup v2 subtree "
						 "delegated to this uid (e.g. systemd "
						 "Delegate=yes)", (unsigned)geteuid())
				: -1;
	if (!cg->usable)
		fprintf(stderr, "hatcheryd: cgroup: unavailable (%s); cgroup = optional, "
				"so children run WITHOUT memory/pids/cpu limits%s\n",
			cg->reason,
			rootless ? " (without root, cgroup_root must be a subtree "
				   "delegated to our uid)" : "");
	for (int p = 0; p < VMP_FILTER__N; p++)
		for (int m = 0; m < VMP_SECCOMP__N; m++)
			if (vmp_jail_filter_build((enum vmp_seccomp_mode)m,
						  (enum vmp_filter_profile)p,
						  &filters[p][m], err) < 0)
				return hatch_err_wrap(err, "seccomp");
	return 0;
}

struct args {
	const char *config, *sock, *kvm_path;
	bool verbose, no_jail, probe_linux, check_config;
	int kvm_fd;
};

/* Returns -1 to go on, else the exit status (usage, --help). */
static int parse_args(int argc, char **argv, struct args *a)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "socket", required_argument, NULL, 's' },
		{ "kvm", required_argument, NULL, 'k' },
		{ "kvm-fd", required_argument, NULL, 'K' },
		{ "no-jail", no_argument, NULL, 'J' },
		{ "probe-linux", no_argument, NULL, 'P' },
		{ "check-config", no_argument, NULL, 'C' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	*a = (struct args){ .kvm_path = "/dev/kvm", .kvm_fd = -1 };
	int o;
	while ((o = getopt_long(argc, argv, "c:s:vh", opts, NULL)) != -1) {
		switch (o) {
		case 'c': a->config = optarg; break;
		case 's': a->sock = optarg; break;
		case 'k': a->kvm_path = optarg; break;
		case 'K': {
			char *end;
			long v = strtol(optarg, &end, 10);
			if (*end || v < 3 || v > 65535) {
				fprintf(stderr, "hatcheryd: --kvm-fd: expected an fd "
						"number >= 3, got \"%s\"\n", optarg);
				return 2;
			}
			a->kvm_fd = (int)v;
			break;
		}
		case 'v': a->verbose = true; break;
		case 'J': a->no_jail = true; break;
		case 'P': a->probe_linux = true; break;
		case 'C': a->check_config = true; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if ((!a->config && !a->probe_linux) || optind != argc) {
		usage(stderr);
		return 2;
	}
	return -1;
}

/* hatcheryd --probe-linux: can this host boot kind = linux pools? For
 * scripts (scripts/test decides from it where the Linux suites run). */
static int probe_linux(const struct args *a)
{
	struct hatch_err err = { 0 };
	struct vmp_kvm_host kvm;
	int kr = a->kvm_fd >= 0 ? vmp_kvm_host_open_fd(&kvm, a->kvm_fd, "--kvm-fd", &err)
				: vmp_kvm_host_open(&kvm, a->kvm_path, &err);
	if (kr < 0) {
		printf("no: cannot use KVM: %s\n", err.msg);
		return 1;
	}
	uint64_t ns = 0;
	int r = vmp_kvm_probe_kernel_mode(&kvm, &ns, &err);
	vmp_kvm_host_close(&kvm);
	if (r < 0) {
		printf("no: %s\n", err.msg);
		return 1;
	}
	printf("yes: 400k guest kernel-mode instructions in %llu us\n",
	       (unsigned long long)(ns / 1000));
	return 0;
}

/* hatcheryd --check-config -c FILE: the config parsed and every file it
 * names read and checked as start-up would (a guest ELF, a kernel's boot
 * header, a snapshot's header), without opening KVM: for an install's
 * test, a packager, or a unit's ExecStartPre. What only KVM can answer
 * (can it boot Linux, does a snapshot fit this host's CPU, vcpus) is left
 * to start-up. Prints each pool's files, so a compiled-in default shows. */
static int check_config(const struct args *a)
{
	struct hatch_err err = { 0 };
	struct sup_config cfg = { 0 };
	int rc = 1;
	if (sup_config_load(a->config, &cfg, &err) < 0 || sup_load_guests(&cfg, &err) < 0 ||
	    sup_load_linux(&cfg, NULL, &err) < 0)
		goto out;
	for (size_t i = 0; i < cfg.n_pools; i++) {
		const struct sup_pool_config *p = &cfg.pools[i];
		if (p->kind != SUP_POOL_RESTORE)
			continue;
		_cleanup_close_ int fd = open(p->snapshot, O_RDONLY | O_CLOEXEC);
		struct snap_header h;
		if (fd < 0) {
			hatch_err_set(&err, HATCHERY__V1__ERROR_CODE__INVALID_ARGUMENT, errno,
				      "[pool \"%s\"] snapshot %s", p->name, p->snapshot);
			goto out;
		}
		if (snap_header_read_fd(fd, &h, NULL, &err) < 0) {
			hatch_err_wrap(&err, "[pool \"%s\"] snapshot %s", p->name, p->snapshot);
			goto out;
		}
	}
	printf("%s: ok\n", a->config);
	for (size_t i = 0; i < cfg.n_pools; i++) {
		const struct sup_pool_config *p = &cfg.pools[i];
		printf("pool \"%s\": kind %s", p->name, sup_pool_kind_name(p->kind));
		if (p->kind == SUP_POOL_BOOTED)
			printf(", guest %s", p->guest);
		else if (p->kind == SUP_POOL_RESTORE)
			printf(", snapshot %s", p->snapshot);
		else if (p->kind == SUP_POOL_LINUX)
			printf(", kernel %s, initrd %s", p->kernel, p->initrd);
		printf("\n");
	}
	rc = 0;
out:
	if (rc)
		fprintf(stderr, "hatcheryd: %s\n", err.msg);
	sup_config_free(&cfg);
	return rc;
}

int main(int argc, char **argv)
{
	struct args a;
	int pr = parse_args(argc, argv, &a);
	if (pr >= 0)
		return pr;
	if (a.probe_linux)
		return probe_linux(&a);
	if (a.check_config)
		return check_config(&a);
	const char *config = a.config, *sock = a.sock, *kvm_path = a.kvm_path;
	bool verbose = a.verbose, no_jail = a.no_jail;
	int kvm_fd = a.kvm_fd;
	setvbuf(stderr, NULL, _IOLBF, 0);
	/* SIGHUP means reload (the loop's signalfd reads it). Blocked from
	 * here, not only from the loop's set-up: a reload asked while the
	 * pools' files are still loading must not kill us (its default
	 * action); it stays pending and is served once the loop runs. */
	sigset_t hup;
	sigemptyset(&hup);
	sigaddset(&hup, SIGHUP);
	sigprocmask(SIG_BLOCK, &hup, NULL);

	struct hatch_err err = { 0 };
	struct sup_config cfg = { 0 };
	if (sup_config_load(config, &cfg, &err) < 0) {
		fprintf(stderr, "hatcheryd: %s\n", err.msg);
		return 1;
	}
	if (sock) {
		if (sock[0] != '/' || strlen(sock) >= sizeof(cfg.socket_path)) {
			fprintf(stderr, "hatcheryd: --socket: need an absolute path "
					"shorter than %zu bytes\n", sizeof(cfg.socket_path));
			sup_config_free(&cfg);
			return 1;
		}
		snprintf(cfg.socket_path, sizeof(cfg.socket_path), "%s", sock);
	}
	/* Under systemd, hatcheryd.socket has bound the socket already. */
	struct sup_sd sd;
	sup_sd_init(&sd);
	int listen_fd = -1;
	char passed[sizeof(cfg.socket_path)];
	if (sup_sd_listen_fd(&listen_fd, passed, sizeof(passed), &err) < 0) {
		fprintf(stderr, "hatcheryd: %s\n", err.msg);
		sup_sd_close(&sd);
		sup_config_free(&cfg);
		return 1;
	}
	if (listen_fd >= 0) {
		if (strcmp(passed, cfg.socket_path) != 0)
			fprintf(stderr, "hatcheryd: listening on %s, the socket systemd "
					"passed; %s says %s: clients that use that path will "
					"not find us\n", passed, sock ? "--socket" : "the config",
				cfg.socket_path);
		snprintf(cfg.socket_path, sizeof(cfg.socket_path), "%s", passed);
	}

	if (sup_load_guests(&cfg, &err) < 0) {
		fprintf(stderr, "hatcheryd: %s\n", err.msg);
		sup_config_free(&cfg);
		return 1;
	}

	bool rootless = geteuid() != 0;
	struct vmp_kvm_host kvm;
	int kr = kvm_fd >= 0 ? vmp_kvm_host_open_fd(&kvm, kvm_fd, "--kvm-fd", &err)
			     : vmp_kvm_host_open(&kvm, kvm_path, &err);
	if (kr < 0) {
		fprintf(stderr, "hatcheryd: cannot use KVM: %s%s\n", err.msg,
			rootless && err.sys_errno == EACCES
				? " (running without root: this uid needs read-write "
				  "access to it, e.g. the kvm group)"
				: "");
		sup_config_free(&cfg);
		return 1;
	}
	if (sup_load_snapshots(&cfg, &kvm, &err) < 0 || sup_load_linux(&cfg, &kvm, &err) < 0) {
		fprintf(stderr, "hatcheryd: %s\n", err.msg);
		vmp_kvm_host_close(&kvm);
		sup_config_free(&cfg);
		return 1;
	}
	int rc = 1;
	struct vmp_jail_filter filters[VMP_FILTER__N][VMP_SECCOMP__N] = { 0 };
	struct sup_cgroup cgroup = { 0 };
	int devnull = -1, self_pidfd = -1;
	/* A second daemon on a live socket would also collide with the first
	 * one's jail uids; say the more useful thing first. */
	if (listen_fd < 0 && sup_socket_check_free(cfg.socket_path, &err) < 0) {
		fprintf(stderr, "hatcheryd: %s\n", err.msg);
		vmp_kvm_host_close(&kvm);
		sup_config_free(&cfg);
		return 1;
	}
	if (start_jail(&cfg, no_jail, rootless, filters, &cgroup, &err) < 0) {
		fprintf(stderr, "hatcheryd: %s\n", err.msg);
		goto out;
	}
	devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
	self_pidfd = (int)syscall(SYS_pidfd_open, getpid(), 0);
	if (devnull < 0 || self_pidfd < 0) {
		fprintf(stderr, "hatcheryd: %s: %s\n",
			devnull < 0 ? "/dev/null" : "pidfd_open", strerror(errno));
		goto out;
	}
	fcntl(self_pidfd, F_SETFD, FD_CLOEXEC);

	if (sup_check_vcpus(&cfg, &kvm, &err) < 0) {
		fprintf(stderr, "hatcheryd: %s\n", err.msg);
		goto out;
	}

	/* Each child costs the supervisor two fds (control socket, pidfd):
	 * the default soft limit of 1024 would cap us near 500 children. */
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	/* Replies go out with MSG_NOSIGNAL, but be sure a vanished client can
	 * never kill the supervisor. */
	signal(SIGPIPE, SIG_IGN);

	struct sup_server_opts so = {
		.cfg = &cfg, .kvm = &kvm, .verbose = verbose, .no_jail = no_jail,
		.rootless = rootless,
		.filters = filters, .cgroup = &cgroup, .devnull_fd = devnull,
		.self_pidfd = self_pidfd, .listen_fd = listen_fd, .sd = &sd,
		.config_path = config, .socket_override = sock,
	};
	listen_fd = -1; /* the server's now */
	int r = sup_server_run(&so, &err);
	if (r < 0)
		fprintf(stderr, "hatcheryd: %s\n", err.msg);
	rc = r < 0 ? 1 : 0;
out:
	if (listen_fd >= 0)
		close(listen_fd);
	sup_sd_close(&sd);
	if (devnull >= 0)
		close(devnull);
	if (self_pidfd >= 0)
		close(self_pidfd);
	for (int p = 0; p < VMP_FILTER__N; p++)
		for (int i = 0; i < VMP_SECCOMP__N; i++)
			vmp_jail_filter_free(&filters[p][i]);
	vmp_kvm_host_close(&kvm);
	sup_config_free(&cfg);
	return rc;
}
