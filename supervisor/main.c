/* main.c - hatcheryd: parse arguments, load the config, probe /dev/kvm,
 * then hand over to the event loop. Everything that can be checked before
 * the first fork is checked here, so that a machine that cannot run the
 * configuration fails at start-up with one clear message. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>

#include "config.h"
#include "kvm.h"
#include "server.h"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: hatcheryd -c CONFIG [--socket PATH] [--kvm PATH] [-v]\n"
		"\n"
		"  -c, --config FILE   INI configuration (see README.md)\n"
		"  -s, --socket PATH   listen here instead of [supervisor] socket\n"
		"      --kvm PATH      KVM device (default /dev/kvm)\n"
		"  -v, --verbose       log every spawn, lease and client\n"
		"  -h, --help\n"
		"\n"
		"Exits 0 after SIGTERM/SIGINT once every child is reaped; 1 when\n"
		"the configuration or the machine cannot be used.\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "socket", required_argument, NULL, 's' },
		{ "kvm", required_argument, NULL, 'k' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	const char *config = NULL, *sock = NULL, *kvm_path = "/dev/kvm";
	bool verbose = false;
	int o;
	while ((o = getopt_long(argc, argv, "c:s:vh", opts, NULL)) != -1) {
		switch (o) {
		case 'c': config = optarg; break;
		case 's': sock = optarg; break;
		case 'k': kvm_path = optarg; break;
		case 'v': verbose = true; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (!config || optind != argc) {
		usage(stderr);
		return 2;
	}
	setvbuf(stderr, NULL, _IOLBF, 0);

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

	struct vmp_kvm_host kvm;
	if (vmp_kvm_host_open(&kvm, kvm_path, &err) < 0) {
		fprintf(stderr, "hatcheryd: cannot use KVM: %s\n", err.msg);
		sup_config_free(&cfg);
		return 1;
	}

	/* What the config asks of this host's KVM, checked now rather than as a
	 * stream of failing children. */
	for (size_t i = 0; i < cfg.n_pools; i++) {
		const struct sup_pool_config *p = &cfg.pools[i];
		if ((int)p->vcpus > kvm.max_vcpus) {
			fprintf(stderr, "hatcheryd: pool \"%s\": vcpus = %u, but this "
					"host's KVM allows at most %d\n",
				p->name, p->vcpus, kvm.max_vcpus);
			vmp_kvm_host_close(&kvm);
			sup_config_free(&cfg);
			return 1;
		}
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

	struct sup_server_opts so = { .cfg = &cfg, .kvm = &kvm, .verbose = verbose };
	int r = sup_server_run(&so, &err);
	if (r < 0)
		fprintf(stderr, "hatcheryd: %s\n", err.msg);
	vmp_kvm_host_close(&kvm);
	sup_config_free(&cfg);
	return r < 0 ? 1 : 0;
}
