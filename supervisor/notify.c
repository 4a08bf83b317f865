/* notify.c - what hatcheryd tells systemd (Type=notify), and when.
 *
 *   READY=1      once every pool holds min_idle ready children; or when
 *                every pool still short is degraded (it failed
 *                SUP_DEGRADED_AFTER spawns in a row and backs off: waiting
 *                for it helps nobody); or after READY_WAIT at most. Never
 *                before the socket accepts: clients that connected through
 *                systemd's socket while we started are served from its
 *                backlog. STATUS= then names the pools that are short and
 *                why (their last spawn error).
 *   STATUS=      the pools at a glance, sent on the timer tick when it
 *                changed: "3 pools, 12 idle, 0 leased, 0 degraded".
 *   WATCHDOG=1   every WATCHDOG_USEC/2, from the tick: a loop that hangs
 *                stops sending it and systemd restarts us.
 *   STOPPING=1   on SIGTERM/SIGINT, before the children are killed.
 *
 * All of it is skipped without NOTIFY_SOCKET (one branch per loop turn).
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "hatchery/clock.h"
#include "loop.h"
#include "systemd.h"

/* The longest we hold READY=1 back for pools to fill: at least this, or
 * longer if a pool's children may take longer to get ready (a linux pool's
 * boot_timeout_ms; children.c kills a spawn after its spawn timeout). */
#define READY_WAIT_MIN_NS (30ull * 1000 * 1000 * 1000)
#define SPAWN_SLACK_NS (10ull * 1000 * 1000 * 1000)

static uint64_t ready_wait_ns(const struct server *s)
{
	uint64_t w = READY_WAIT_MIN_NS;
	for (size_t i = 0; i < s->n_pools; i++) {
		const struct sup_pool_config *c = s->pools[i]->p.cfg;
		uint64_t t = c->linux_machine
				     ? (uint64_t)c->boot_timeout_ms * 1000000ull + SPAWN_SLACK_NS
				     : SPAWN_SLACK_NS;
		if (t > w)
			w = t;
	}
	return w;
}

static bool pool_short(const struct sup_pool *p)
{
	return p->count[CHILD_READY] < p->cfg->min_idle;
}

__attribute__((format(printf, 4, 5))) static size_t
append(char *buf, size_t len, size_t o, const char *fmt, ...)
{
	if (o >= len)
		return o;
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf + o, len - o, fmt, ap);
	va_end(ap);
	return n < 0 ? o : o + (size_t)n;
}

/* "; short: linux 0/2 idle (degraded: <last error>), ..." for the pools
 * below min_idle. */
static size_t append_short(const struct server *s, char *buf, size_t len, size_t o)
{
	bool first = true;
	for (size_t i = 0; i < s->n_pools; i++) {
		const struct sup_pool *p = &s->pools[i]->p;
		if (!pool_short(p))
			continue;
		o = append(buf, len, o, "%s%s %u/%u idle", first ? "; short: " : ", ",
			   p->cfg->name, p->count[CHILD_READY], p->cfg->min_idle);
		first = false;
		if (sup_pool_degraded(p) || p->last_error[0])
			o = append(buf, len, o, " (%s%s)",
				   sup_pool_degraded(p) ? "degraded: " : "last error: ",
				   p->last_error[0] ? p->last_error : "spawns fail");
	}
	return o;
}

/* The STATUS= text (without the key). */
static void status_text(const struct server *s, char *buf, size_t len)
{
	unsigned idle = 0, leased = 0, spawning = 0, degraded = 0, filled = 0;
	for (size_t i = 0; i < s->n_pools; i++) {
		const struct sup_pool *p = &s->pools[i]->p;
		idle += p->count[CHILD_READY];
		leased += p->count[CHILD_LEASED];
		spawning += p->count[CHILD_SPAWNING];
		degraded += sup_pool_degraded(p);
		filled += !pool_short(p);
	}
	size_t o;
	if (s->stopping)
		o = append(buf, len, 0, "stopping: %u child(ren) left to reap",
			   idle + leased + spawning);
	else if (!s->sd_ready)
		o = append(buf, len, 0, "starting: %u of %zu pool(s) filled, %u idle, "
			   "%u spawning", filled, s->n_pools, idle, spawning);
	else
		o = append(buf, len, 0, "%zu pool(s), %u idle, %u leased, %u spawning, "
			   "%u degraded", s->n_pools, idle, leased, spawning, degraded);
	if (!s->stopping)
		append_short(s, buf, len, o);
}

static void send_status(struct server *s, const char *prefix)
{
	char text[sizeof(s->sd_status)];
	status_text(s, text, sizeof(text));
	if (!prefix[0] && strcmp(text, s->sd_status) == 0)
		return;
	memcpy(s->sd_status, text, sizeof(text));
	char msg[sizeof(text) + 64];
	snprintf(msg, sizeof(msg), "%sSTATUS=%s", prefix, text);
	sup_sd_send(s->o->sd, msg);
}

void notify_start(struct server *s)
{
	struct sup_sd *sd = s->o->sd;
	if (!sup_sd_enabled(sd))
		return;
	uint64_t now = hatch_now_ns(), wait = ready_wait_ns(s);
	s->sd_ready_by = now + wait;
	if (sd->watchdog_ns) {
		s->sd_next_watchdog = now + sd->watchdog_ns / 2;
		arm_timer(s, s->sd_next_watchdog);
	}
	/* Our own bound, plus room for the READY=1 itself: systemd's start
	 * timeout (TimeoutStartSec=, 90 s by default) must not fire first
	 * while a slow linux pool boots. EXTEND_TIMEOUT_USEC only extends. */
	char msg[64];
	snprintf(msg, sizeof(msg), "EXTEND_TIMEOUT_USEC=%llu\n",
		 (unsigned long long)((wait + SPAWN_SLACK_NS) / 1000u));
	send_status(s, msg);
}

void notify_turn(struct server *s)
{
	if (s->sd_ready || !sup_sd_enabled(s->o->sd) || s->stopping)
		return;
	bool timed_out = hatch_now_ns() >= s->sd_ready_by;
	unsigned short_ok = 0, n_short = 0;
	for (size_t i = 0; i < s->n_pools; i++) {
		const struct sup_pool *p = &s->pools[i]->p;
		if (!pool_short(p))
			continue;
		n_short++;
		short_ok += sup_pool_degraded(p);
	}
	if (n_short > short_ok && !timed_out)
		return;
	s->sd_ready = true;
	if (n_short)
		sup_log("ready (READY=1) with %u pool(s) below min_idle: %s", n_short,
			timed_out ? "the start-up wait ran out" : "degraded");
	send_status(s, "READY=1\n");
}

void notify_tick(struct server *s, uint64_t now)
{
	struct sup_sd *sd = s->o->sd;
	if (!sup_sd_enabled(sd))
		return;
	notify_turn(s); /* the start-up wait may have run out */
	send_status(s, "");
	if (sd->watchdog_ns && now >= s->sd_next_watchdog) {
		sup_sd_send(sd, "WATCHDOG=1");
		s->sd_next_watchdog = now + sd->watchdog_ns / 2;
	}
	if (sd->watchdog_ns)
		arm_timer(s, s->sd_next_watchdog);
}

void notify_stopping(struct server *s)
{
	if (sup_sd_enabled(s->o->sd))
		send_status(s, "STOPPING=1\n");
}
