/* reload.c - SIGHUP and the Reload request: re-read the configuration file
 * hatcheryd was started with and make it the running one.
 *
 * Everything that can fail happens before anything changes: the file is
 * parsed and checked (the messages are start-up's), what a reload cannot
 * change is compared, every pool's guest, snapshot, kernel and initrd are
 * loaded and checked (assets.c), jail slots and cgroups for the new pools
 * are made. Only then is the new configuration swapped in, which cannot
 * fail:
 *
 *   - a pool in both, built the same way: its settings change at once
 *     (min_idle, max, health, refill, allow_uids, max_idle_age_ms);
 *   - a pool in both whose children would be built differently (memory_mib,
 *     kind, guest, its bytes, ...: sup_pool_config_same_build): its
 *     generation is bumped. Its idle children of the old generation are
 *     retired one per tick, each once a new one is ready (children.c,
 *     retire_idle); leased ones are never touched, and exit at the end of
 *     their lease (a reuse = snapshot child is retired instead of reset);
 *   - a pool only in the new file: filled from scratch;
 *   - a pool only in the old one: removed. Its waiting Acquires fail with
 *     NOT_FOUND, as new ones do (not UNAVAILABLE: hatchctl's exit 3 says
 *     "retry", and the pool will not come back); its idle and building
 *     children are retired; its leased ones finish their leases. It keeps a
 *     copy of its settings and stays in Status (removed = true) until its
 *     last child is gone (collect_removed_pools).
 *
 * The old configuration's loaded bytes and snapshot fds are released as
 * soon as the new one runs: no spawn uses them any more, and every child
 * forked from them has its own copy.
 *
 * Not reloadable (refused, the running configuration stays): [supervisor]
 * socket, socket_mode, jail_uid_base, cgroup and cgroup_root. They are set
 * up once (the bound socket, the checked uid range, the cgroup tree) and
 * changing them under live children would need what a restart does.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "assets.h"
#include "hatchery/clock.h"
#include "loop.h"

/* ---- checks before anything changes ------------------------------------ */

/* What a reload cannot change: refuse a file that changes it. */
static int check_fixed(const struct sup_config *cur, const struct sup_config *next,
		       struct hatch_err *err)
{
	const char *key = NULL;
	char was[300], now[300];
	if (strcmp(cur->socket_path, next->socket_path) != 0) {
		key = "socket";
		snprintf(was, sizeof(was), "%s", cur->socket_path);
		snprintf(now, sizeof(now), "%s", next->socket_path);
	} else if (cur->socket_mode != next->socket_mode) {
		key = "socket_mode";
		snprintf(was, sizeof(was), "%#o", cur->socket_mode);
		snprintf(now, sizeof(now), "%#o", next->socket_mode);
	} else if (cur->jail_uid_base != next->jail_uid_base) {
		key = "jail_uid_base";
		snprintf(was, sizeof(was), "%u", cur->jail_uid_base);
		snprintf(now, sizeof(now), "%u", next->jail_uid_base);
	} else if (cur->cgroup != next->cgroup) {
		key = "cgroup";
		snprintf(was, sizeof(was), "%s", sup_cgroup_mode_name(cur->cgroup));
		snprintf(now, sizeof(now), "%s", sup_cgroup_mode_name(next->cgroup));
	} else if (strcmp(cur->cgroup_root, next->cgroup_root) != 0) {
		key = "cgroup_root";
		snprintf(was, sizeof(was), "%s", cur->cgroup_root[0] ? cur->cgroup_root : "(unset)");
		snprintf(now, sizeof(now), "%s", next->cgroup_root[0] ? next->cgroup_root : "(unset)");
	}
	if (!key)
		return 0;
	return hatch_err_set(err, E(FAILED_PRECONDITION), 0,
			     "[supervisor] %s cannot change without a restart "
			     "(running: %s, file: %s)", key, was, now);
}

/* Jail slots for the new pools' children beside the ones still alive:
 * never fewer (a slot above the new sum may be held by a child of a
 * removed pool, or of a pool whose max went down). The uids added are
 * checked as start-up checked the first ones. */
static int grow_slots(struct server *s, const struct sup_config *next,
		      struct hatch_err *err)
{
	unsigned used = 0;
	for (unsigned i = 0; i < s->n_slots; i++)
		used += s->slot_used[i];
	unsigned want = sup_config_jail_slots(next) + used;
	if (want <= s->n_slots)
		return 0;
	unsigned long top = (unsigned long)s->cfg->jail_uid_base + want - 1;
	if (top > 4294967294UL)
		return hatch_err_set(err, E(INVALID_ARGUMENT), 0,
				     "[supervisor] jail_uid_base: %u + %u jail uids (the "
				     "pools' max, and live children) goes past uid 4294967294",
				     s->cfg->jail_uid_base, want);
	if (!s->o->rootless && !s->o->no_jail &&
	    sup_jail_check_uids(s->cfg->jail_uid_base + s->n_slots, want - s->n_slots, err) < 0)
		return -1;
	uint8_t *su = realloc(s->slot_used, want);
	if (!su)
		return hatch_err_set(err, E(INTERNAL), ENOMEM, "jail slots");
	memset(su + s->n_slots, 0, want - s->n_slots);
	s->slot_used = su;
	s->n_slots = want;
	return 0;
}

static struct spool *find_pool(struct server *s, const char *name)
{
	for (size_t i = 0; i < s->n_pools; i++)
		if (!s->pools[i]->p.removed && strcmp(s->pools[i]->p.cfg->name, name) == 0)
			return s->pools[i];
	return NULL;
}

/* ---- the swap (cannot fail) --------------------------------------------- */

struct plan {
	struct spool **pools;      /* the new s->pools */
	struct spool **added;      /* per new pool: a fresh spool, or NULL */
	struct sup_pool_config **keep; /* per old pool: a copy if removed now */
	unsigned n_added, n_removed, n_rebuilt, n_changed, n_same;
};

static void plan_free(struct plan *pl, size_t n_new, size_t n_old)
{
	for (size_t i = 0; pl->added && i < n_new; i++)
		free(pl->added[i]);
	for (size_t i = 0; pl->keep && i < n_old; i++)
		free(pl->keep[i]);
	free(pl->pools);
	free(pl->added);
	free(pl->keep);
}

/* Every allocation the swap needs, made before it. */
static int plan_alloc(struct server *s, const struct sup_config *next, struct plan *pl,
		      struct hatch_err *err)
{
	pl->pools = calloc(next->n_pools + s->n_pools, sizeof(*pl->pools));
	pl->added = calloc(next->n_pools, sizeof(*pl->added));
	pl->keep = calloc(s->n_pools + 1, sizeof(*pl->keep));
	if (!pl->pools || !pl->added || !pl->keep)
		return hatch_err_set(err, E(INTERNAL), ENOMEM, "reload");
	for (size_t j = 0; j < next->n_pools; j++) {
		if (find_pool(s, next->pools[j].name))
			continue;
		if (!(pl->added[j] = calloc(1, sizeof(*pl->added[j]))))
			return hatch_err_set(err, E(INTERNAL), ENOMEM, "reload");
		if (sup_cgroup_pool_add(s->o->cgroup, next->pools[j].name, err) < 0)
			return hatch_err_wrap(err, "pool \"%s\"", next->pools[j].name);
	}
	for (size_t i = 0; i < s->n_pools; i++) {
		const struct sup_pool *p = &s->pools[i]->p;
		bool kept = false;
		for (size_t j = 0; !p->removed && j < next->n_pools && !kept; j++)
			kept = strcmp(p->cfg->name, next->pools[j].name) == 0;
		if (p->removed || kept)
			continue;
		if (!(pl->keep[i] = malloc(sizeof(*pl->keep[i]))))
			return hatch_err_set(err, E(INTERNAL), ENOMEM, "reload");
	}
	return 0;
}

static bool same_bookkeeping(const struct sup_pool_config *a, const struct sup_pool_config *b)
{
	return a->min_idle == b->min_idle && a->max == b->max &&
	       a->max_spawning == b->max_spawning && a->refill_delay_us == b->refill_delay_us &&
	       a->health_interval_ms == b->health_interval_ms &&
	       a->health_timeout_ms == b->health_timeout_ms &&
	       a->max_idle_age_ms == b->max_idle_age_ms &&
	       a->n_allow_uids == b->n_allow_uids &&
	       memcmp(a->allow_uids, b->allow_uids, a->n_allow_uids * sizeof(uid_t)) == 0;
}

/* A pool the new file no longer has: no new Acquires, waiters told, idle
 * and building children retired; leased ones finish. Its settings are
 * copied out of the configuration about to be freed, without the loaded
 * bytes (it spawns nothing). */
static void remove_pool(struct server *s, struct spool *sp, struct sup_pool_config *copy)
{
	struct sup_pool *p = &sp->p;
	*copy = *p->cfg;
	copy->guest_elf = copy->kernel_img = copy->initrd_img = NULL;
	copy->guest_elf_len = copy->kernel_len = copy->initrd_len = 0;
	copy->snap_fd = -1;
	sp->own_cfg = copy;
	p->cfg = copy;
	p->removed = true;
	p->gen++; /* every child left is of an old generation now */
	char why[128];
	snprintf(why, sizeof(why), "pool \"%s\" was removed by a configuration reload",
		 copy->name);
	fail_waiters(s, sp, E(NOT_FOUND), why);
	while (p->list[CHILD_READY])
		kill_child(s, p->list[CHILD_READY], EV_RETIRE);
	while (p->list[CHILD_SPAWNING])
		kill_child(s, p->list[CHILD_SPAWNING], EV_RETIRE);
	sup_log("pool %s: removed by the reload; %u leased child(ren) finish their "
		"lease%s", copy->name, p->count[CHILD_LEASED],
		p->count[CHILD_LEASED] == 1 ? "" : "s");
}

static void swap_in(struct server *s, struct sup_config *next, struct plan *pl)
{
	size_t n = 0;
	for (size_t j = 0; j < next->n_pools; j++) {
		struct sup_pool_config *pc = &next->pools[j];
		struct spool *sp = pl->added[j];
		if (sp) {
			pl->added[j] = NULL;
			sup_pool_init(&sp->p, pc);
			pl->n_added++;
			sup_log("pool %s: added by the reload", pc->name);
		} else {
			sp = find_pool(s, pc->name);
			if (!sup_pool_config_same_build(sp->p.cfg, pc)) {
				sp->p.gen++;
				pl->n_rebuilt++;
				sup_log("pool %s: children are built differently now (generation "
					"%u); its idle children will be replaced, leased ones "
					"end with their lease", pc->name, sp->p.gen);
			} else if (!same_bookkeeping(sp->p.cfg, pc)) {
				pl->n_changed++;
			} else {
				pl->n_same++;
			}
			sp->p.cfg = pc;
		}
		sp->dirty = true;
		pl->pools[n++] = sp;
	}
	for (size_t i = 0; i < s->n_pools; i++) {
		struct spool *sp = s->pools[i];
		if (pl->keep[i]) {
			remove_pool(s, sp, pl->keep[i]);
			pl->keep[i] = NULL;
			pl->n_removed++;
		}
		if (sp->p.removed)
			pl->pools[n++] = sp;
	}
	free(s->pools);
	s->pools = pl->pools;
	pl->pools = NULL;
	s->n_pools = n;

	/* The old configuration: nothing points into it any more. Its bytes
	 * can go (no spawn uses them; children have their copies); main.c's
	 * own struct stays for main.c to free. */
	if (s->cfg_owned)
		sup_config_free(s->cfg_owned);
	else
		sup_config_release_assets(s->o->cfg);
	free(s->cfg_owned);
	s->cfg_owned = next;
	s->cfg = next;
	update_tick(s);
	conns_reauthorize(s);
	arm_timer(s, hatch_now_ns() + s->tick_ns);
}

int sup_reload(struct server *s, char *summary, size_t cap, struct hatch_err *err)
{
	struct sup_config *next = calloc(1, sizeof(*next));
	struct plan pl = { 0 };
	size_t n_new = 0;
	if (!next) {
		hatch_err_set(err, E(INTERNAL), ENOMEM, "reload");
		goto refused;
	}
	sup_log("reload: reading %s", s->o->config_path);
	if (sup_config_load(s->o->config_path, next, err) < 0)
		goto refused;
	n_new = next->n_pools;
	if (s->o->socket_override)
		snprintf(next->socket_path, sizeof(next->socket_path), "%s",
			 s->o->socket_override);
	if (check_fixed(s->cfg, next, err) < 0 || sup_load_assets(next, s->o->kvm, err) < 0 ||
	    grow_slots(s, next, err) < 0 || plan_alloc(s, next, &pl, err) < 0)
		goto refused;
	size_t n_old = s->n_pools;
	swap_in(s, next, &pl);
	plan_free(&pl, n_new, n_old);
	snprintf(summary, cap, "%zu pool%s: %u added, %u removed, %u rebuilt, %u changed, "
		 "%u unchanged", next->n_pools, next->n_pools == 1 ? "" : "s",
		 pl.n_added, pl.n_removed, pl.n_rebuilt, pl.n_changed, pl.n_same);
	sup_log("reload: %s", summary);
	return 0;
refused:
	plan_free(&pl, n_new, s->n_pools);
	if (next)
		sup_config_free(next);
	free(next);
	sup_log("reload refused: %s; the running configuration stays", err->msg);
	return -1;
}

void handle_reload(struct server *s, struct conn *cn, uint64_t id)
{
	if (cn->uid != 0 && cn->uid != geteuid()) {
		send_error(s, cn, id, E(PERMISSION_DENIED),
			   "uid %u may not reload hatcheryd (only uid 0 and uid %u)",
			   cn->uid, (unsigned)geteuid());
		return;
	}
	if (s->stopping) {
		send_error(s, cn, id, E(UNAVAILABLE), "hatcheryd is shutting down");
		return;
	}
	char summary[256];
	struct hatch_err err = { 0 };
	sup_log("reload asked by pid %d uid %u", cn->pid, cn->uid);
	if (sup_reload(s, summary, sizeof(summary), &err) < 0) {
		send_error(s, cn, id, err.code ? err.code : E(INTERNAL), "%s", err.msg);
		return;
	}
	Hatchery__V1__Reply rep = HATCHERY__V1__REPLY__INIT;
	Hatchery__V1__ReloadReply rr = HATCHERY__V1__RELOAD_REPLY__INIT;
	rr.summary = summary;
	rep.id = id;
	rep.body_case = HATCHERY__V1__REPLY__BODY_RELOAD;
	rep.reload = &rr;
	send_reply(s, cn, &rep, NULL, 0);
}

/* ---- removed pools, and teardown ---------------------------------------- */

static void spool_free(struct spool *sp)
{
	free(sp->own_cfg);
	free(sp);
}

void collect_removed_pools(struct server *s)
{
	size_t n = 0;
	for (size_t i = 0; i < s->n_pools; i++) {
		struct spool *sp = s->pools[i];
		if (sp->p.removed && sup_pool_total(&sp->p) == 0 && !sp->whead) {
			sup_log("pool %s: its last child is gone", sp->p.cfg->name);
			spool_free(sp);
			continue;
		}
		s->pools[n++] = sp;
	}
	s->n_pools = n;
}

void pools_free_all(struct server *s)
{
	for (size_t i = 0; i < s->n_pools; i++)
		spool_free(s->pools[i]);
	free(s->pools);
	s->pools = NULL;
	s->n_pools = 0;
	if (s->cfg_owned) {
		sup_config_free(s->cfg_owned);
		free(s->cfg_owned);
		s->cfg_owned = NULL;
	}
}
