/* Soak: clients acquire and release in a loop while children of every state
 * (spawning, ready, leased) are SIGKILLed at random. Every Acquire must end
 * in a lease or an error reply with its id: never a dropped connection, an
 * end of stream or a silence. Afterwards the daemon is back at its fd
 * baseline with no zombies (h_finish).
 *
 * Bounded by a time budget (SOAK_MS) that is *not* scaled by the slowdown:
 * the kills come at the same real-time pace everywhere, and even under the
 * emulator (ASan included) the budget sees hundreds of leases; what makes a
 * run count is the minimum amount of work checked at the end, so a run that
 * did nothing does not pass. Only the waits for replies are scaled.
 *
 * Without /dev/kvm the test is reported as skipped, never as passed. */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "hatchery/cleanup.h"

#define SOAK_MS 30000u
#define CLIENTS 4
/* What a run must have done at least, natively or emulated. */
#define MIN_LEASES 100
#define MIN_KILLS 40

TestSuite(soak, .fini = h_teardown, .timeout = 300);

struct soak_client {
	pthread_t thread;
	const char *sock;
	atomic_bool *stop;
	unsigned deadline_ms, reply_ms;
	/* results, read after join */
	unsigned acquires, leases, errors, dropped, bad_id, connect_failed;
	int first_error;      /* the first unexpected error code seen */
	char what[160];       /* the first drop, described */
};

static int soak_connect(const char *path)
{
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* Say hello to the VM, then end the lease one of two ways. The child may
 * be killed at any moment: errors here are expected and not counted. */
static void use_vm(int vm, unsigned n)
{
	if (n % 2) {
		hatch_vm_release(vm, NULL);
		return;
	}
	struct timeval tv = { .tv_sec = 2 };
	setsockopt(vm, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	hatch_vm_ping(vm, NULL);
	close(vm);
}

static void *soak_client_main(void *arg)
{
	struct soak_client *sc = arg;
	int fd = -1;
	uint64_t id = 0;
	while (!atomic_load(sc->stop)) {
		if (fd < 0 && (fd = soak_connect(sc->sock)) < 0) {
			sc->connect_failed++;
			break;
		}
		++id;
		if (h_send_acquire_req(fd, id, "p", sc->deadline_ms) < 0) {
			if (!sc->what[0])
				snprintf(sc->what, sizeof(sc->what),
					 "send Acquire %llu failed", (unsigned long long)id);
			sc->dropped++;
			close(fd);
			fd = -1;
			continue;
		}
		sc->acquires++;
		Hatchery__V1__Reply *rep = NULL;
		int vm = -1;
		int r = h_recv_pb(fd, &hatchery__v1__reply__descriptor, sc->reply_ms,
				  (ProtobufCMessage **)&rep, &vm);
		if (r != 1) {
			if (!sc->what[0])
				snprintf(sc->what, sizeof(sc->what),
					 "Acquire %llu: %s", (unsigned long long)id,
					 r == 0 ? "end of stream, no reply"
						: strerror(-r));
			sc->dropped++;
			close(fd);
			fd = -1;
			continue;
		}
		if (rep->id != id)
			sc->bad_id++;
		if (rep->error) {
			sc->errors++;
			/* Under kills the only fair refusal is an empty pool. */
			if (rep->error->code != HATCHERY__V1__ERROR_CODE__POOL_EXHAUSTED &&
			    !sc->first_error)
				sc->first_error = rep->error->code;
			if (vm >= 0)
				close(vm);
		} else if (rep->body_case == HATCHERY__V1__REPLY__BODY_ACQUIRE && vm >= 0) {
			sc->leases++;
			use_vm(vm, sc->leases);
		} else {
			if (!sc->what[0])
				snprintf(sc->what, sizeof(sc->what),
					 "Acquire %llu: a reply with neither error nor VM",
					 (unsigned long long)id);
			sc->dropped++;
			if (vm >= 0)
				close(vm);
		}
		hatch_free(rep);
	}
	if (fd >= 0)
		close(fd);
	return NULL;
}

/* A pid from the pool's children in any state, or 0 if there is none. */
static pid_t random_child(struct harness *h)
{
	pid_t pids[64];
	size_t n = h_child_pids(h, "p", NULL, pids, HATCH_ARRAY_SIZE(pids));
	if (n > HATCH_ARRAY_SIZE(pids))
		n = HATCH_ARRAY_SIZE(pids);
	return n ? pids[(size_t)rand() % n] : 0;
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000 };
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

Test(soak, acquire_release_under_random_kills)
{
	struct harness *h = h_start("[pool \"p\"]\nkind = empty\nmemory_mib = 16\n"
				    "min_idle = 2\nmax = 6\n");
	srand((unsigned)getpid());
	atomic_bool stop = false;
	struct soak_client sc[CLIENTS];
	memset(sc, 0, sizeof(sc));
	for (int i = 0; i < CLIENTS; i++) {
		sc[i].sock = h->sock;
		sc[i].stop = &stop;
		sc[i].deadline_ms = t_ms(3000);
		/* The reply must come within the Acquire's own deadline plus
		 * a margin: silence past that is a lost request. */
		sc[i].reply_ms = sc[i].deadline_ms + t_ms(5000);
		cr_assert_eq(pthread_create(&sc[i].thread, NULL, soak_client_main, &sc[i]), 0);
	}

	/* The killer: about four kills a second, of whatever state the
	 * chosen child is in. The pacing is the load, not a wait for a
	 * condition. */
	uint64_t end = h_now_ms() + SOAK_MS;
	unsigned kills = 0;
	while (h_now_ms() < end) {
		sleep_ms(50 + (unsigned)rand() % 400);
		pid_t pid = random_child(h);
		if (pid > 0 && kill(pid, SIGKILL) == 0)
			kills++;
	}
	atomic_store(&stop, true);
	unsigned acquires = 0, leases = 0, errors = 0, dropped = 0, bad_id = 0;
	for (int i = 0; i < CLIENTS; i++) {
		pthread_join(sc[i].thread, NULL);
		acquires += sc[i].acquires;
		leases += sc[i].leases;
		errors += sc[i].errors;
		dropped += sc[i].dropped;
		bad_id += sc[i].bad_id;
	}
	fprintf(stderr, "soak: %u s, %u kills, %u acquires: %u leases, %u error replies, "
		"%u without a reply (%.1f%%), %u with a wrong id\n",
		SOAK_MS / 1000, kills, acquires, leases, errors, dropped,
		acquires ? 100.0 * dropped / acquires : 0.0, bad_id);
	for (int i = 0; i < CLIENTS; i++) {
		cr_expect_eq(sc[i].connect_failed, 0, "client %d could not connect", i);
		cr_expect_eq(sc[i].first_error, 0, "client %d: unexpected error code %d",
			     i, sc[i].first_error);
		cr_expect_eq(sc[i].dropped, 0, "client %d: %u Acquires got no reply (first: %s)",
			     i, sc[i].dropped, sc[i].what);
	}
	cr_assert_eq(dropped, 0, "%u of %u Acquires got no reply", dropped, acquires);
	cr_assert_eq(bad_id, 0, "%u replies carried another request's id", bad_id);
	cr_assert_geq(leases, MIN_LEASES, "only %u leases in the budget", leases);
	cr_assert_geq(kills, MIN_KILLS, "only %u kills in the budget", kills);
	h_finish(h);
}
