/* status.c - the Status and Stats replies: the pools' counts, children and
 * counters (all kept by pool.c), as hatchctl shows them. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "hatchery/clock.h"
#include "hatchery/cleanup.h"
#include "loop.h"

/* le_counts: LAT_LE_N slots of the caller's, filled cumulatively. */
static void fill_latency(Hatchery__V1__Latency *l, const struct lat_hist *h,
			 uint64_t *le_counts)
{
	l->count = h->count;
	l->p50 = lat_percentile(h, 50);
	l->p90 = lat_percentile(h, 90);
	l->p99 = lat_percentile(h, 99);
	l->max = h->max;
	l->sum_ns = h->sum;
	uint64_t below = 0;
	for (unsigned i = 0; i < LAT_LE_N; i++) {
		below += h->le_band[i];
		le_counts[i] = below;
	}
	l->n_le_counts = LAT_LE_N;
	l->le_counts = le_counts;
}

/* Sized, not cut: at SUP_MAX_POOLS pools with every varint at its widest,
 * a pool is about 720 bytes (its name, ten counters, two Latency of
 * 5 + 1 + LAT_LE_N u64s), 46 KiB in all, under IPC_MAX_MSG. */
void handle_stats(struct server *s, struct conn *cn, uint64_t id)
{
	size_t n = s->n_pools;
	_cleanup_free_ Hatchery__V1__PoolStats *ps = calloc(n, sizeof(*ps));
	_cleanup_free_ Hatchery__V1__PoolStats **pp = calloc(n, sizeof(*pp));
	_cleanup_free_ Hatchery__V1__Latency *lat = calloc(2 * n, sizeof(*lat));
	_cleanup_free_ uint64_t *le = calloc(2 * n * LAT_LE_N, sizeof(*le));
	if (!ps || !pp || !lat || !le) {
		send_error(s, cn, id, E(INTERNAL), "out of memory");
		return;
	}
	for (size_t i = 0; i < n; i++) {
		const struct sup_pool *p = &s->pools[i]->p;
		hatchery__v1__pool_stats__init(&ps[i]);
		hatchery__v1__latency__init(&lat[2 * i]);
		hatchery__v1__latency__init(&lat[2 * i + 1]);
		ps[i].name = (char *)p->cfg->name;
		ps[i].acquisitions = p->stats.acquisitions;
		ps[i].hits = p->stats.hits;
		ps[i].misses = p->stats.misses;
		ps[i].spawned = p->stats.spawned;
		ps[i].spawn_failures = p->stats.spawn_failures;
		ps[i].unexpected_exits = p->stats.unexpected_exits;
		ps[i].health_failures = p->stats.health_failures;
		ps[i].seccomp_kills = p->stats.seccomp_kills;
		ps[i].resets = p->stats.resets;
		ps[i].retired_max_age = p->stats.retired_max_age;
		ps[i].retired_reload = p->stats.retired_reload;
		ps[i].disk_backend_exits = p->stats.disk_backend_exits;
		ps[i].active_leases = p->count[CHILD_LEASED];
		fill_latency(&lat[2 * i], &p->stats.acquire, &le[2 * i * LAT_LE_N]);
		fill_latency(&lat[2 * i + 1], &p->stats.spawn_to_ready,
			     &le[(2 * i + 1) * LAT_LE_N]);
		ps[i].acquire = &lat[2 * i];
		ps[i].spawn_to_ready = &lat[2 * i + 1];
		pp[i] = &ps[i];
	}
	Hatchery__V1__Reply rep = HATCHERY__V1__REPLY__INIT;
	Hatchery__V1__StatsReply sr = HATCHERY__V1__STATS_REPLY__INIT;
	sr.n_pools = n;
	sr.pools = pp;
	sr.n_latency_le_ns = LAT_LE_N;
	sr.latency_le_ns = (uint64_t *)lat_le_ns;
	rep.id = id;
	rep.body_case = HATCHERY__V1__REPLY__BODY_STATS;
	rep.stats = &sr;
	send_reply(s, cn, &rep, NULL, 0);
}

void handle_status(struct server *s, struct conn *cn, uint64_t id)
{
	size_t n = s->n_pools, nchildren = 0;
	for (size_t i = 0; i < n; i++)
		nchildren += sup_pool_total(&s->pools[i]->p);
	_cleanup_free_ Hatchery__V1__PoolStatus *ps = calloc(n, sizeof(*ps));
	_cleanup_free_ Hatchery__V1__PoolStatus **pp = calloc(n, sizeof(*pp));
	_cleanup_free_ Hatchery__V1__ChildStatus *cs = calloc(nchildren + 1, sizeof(*cs));
	_cleanup_free_ Hatchery__V1__ChildStatus **cp = calloc(nchildren + 1, sizeof(*cp));
	if (!ps || !pp || !cs || !cp) {
		send_error(s, cn, id, E(INTERNAL), "out of memory");
		return;
	}
	uint64_t now = hatch_now_ns();
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
		const struct sup_pool *p = &s->pools[i]->p;
		hatchery__v1__pool_status__init(&ps[i]);
		ps[i].name = (char *)p->cfg->name;
		ps[i].kind = (char *)sup_pool_kind_name(p->cfg->kind);
		ps[i].reuse = (char *)sup_reuse_mode_name(p->cfg->reuse);
		ps[i].idle = p->count[CHILD_READY];
		ps[i].leased = p->count[CHILD_LEASED];
		ps[i].spawning = p->count[CHILD_SPAWNING];
		ps[i].min_idle = p->cfg->min_idle;
		ps[i].max = p->cfg->max;
		ps[i].degraded = sup_pool_degraded(p);
		ps[i].last_error = (char *)p->last_error;
		ps[i].waiting = p->waiting;
		ps[i].removed = p->removed;
		ps[i].generation = p->gen;
		/* disk_socket: the external backend's socket, mode "socket". */
		ps[i].disk = (char *)(p->cfg->disk_socket[0] ? p->cfg->disk_socket : p->cfg->disk);
		ps[i].disk_mode = (char *)(p->cfg->disk[0] ? sup_disk_mode_name(p->cfg->disk_mode)
					   : p->cfg->disk_socket[0] ? "socket" : "");
		ps[i].children = &cp[k];
		for (int st = 0; st < CHILD__NSTATES; st++) {
			for (struct sup_child *c = p->list[st]; c && k < nchildren; c = c->next) {
				hatchery__v1__child_status__init(&cs[k]);
				cs[k].id = c->id;
				cs[k].pid = (uint32_t)c->pid;
				cs[k].state = (char *)sup_child_state_name(c->state);
				cs[k].age_ms = (now - c->t_fork) / 1000000;
				cs[k].disk_backend_pid =
					c->disk_pidfd >= 0 ? (uint32_t)c->disk_pid : 0;
				cp[k] = &cs[k];
				k++;
				ps[i].n_children++;
			}
		}
		pp[i] = &ps[i];
	}
	Hatchery__V1__Reply rep = HATCHERY__V1__REPLY__INIT;
	Hatchery__V1__StatusReply sr = HATCHERY__V1__STATUS_REPLY__INIT;
	sr.pid = (uint32_t)getpid();
	sr.uptime_ms = (now - s->t_start) / 1000000;
	char cgroup[sizeof(s->o->cgroup->reason) + 32];
	if (s->o->no_jail)
		snprintf(cgroup, sizeof(cgroup), "off (--no-jail)");
	else if (s->o->cgroup->usable)
		snprintf(cgroup, sizeof(cgroup), "v2 at %s", s->o->cgroup->base);
	else
		snprintf(cgroup, sizeof(cgroup), "unavailable (%s)", s->o->cgroup->reason);
	sr.jail = (char *)(s->o->no_jail ? "off (--no-jail)"
			   : s->o->rootless ? "on (rootless: one uid for all children)"
					    : "on");
	sr.cgroup = cgroup;
	sr.n_pools = n;
	sr.pools = pp;
	rep.id = id;
	rep.body_case = HATCHERY__V1__REPLY__BODY_STATUS;
	rep.status = &sr;
	/* Thousands of children do not fit in one packet: halve the child
	 * lists until the reply does; the counts stay exact. */
	while (protobuf_c_message_get_packed_size(&rep.base) > IPC_MAX_MSG) {
		for (size_t i = 0; i < n; i++) {
			ps[i].n_children /= 2;
			ps[i].children_truncated = true;
		}
	}
	send_reply(s, cn, &rep, NULL, 0);
}
