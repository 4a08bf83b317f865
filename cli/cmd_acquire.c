/* cmd_acquire.c - acquire POOL: lease a VM, ping it, read its info, release
 * it, and show what came back (the VM, its jail seen from inside, the
 * spawn and setup phases) and how long each step took. */
#include <stdio.h>
#include <unistd.h>

#include "hatchery/clock.h"
#include "hatchery/cleanup.h"
#include "hatchctl.h"

static const struct option acquire_opts[] = {
	{ "json", no_argument, NULL, OPT_JSON },
	{ "deadline", required_argument, NULL, OPT_DEADLINE },
	{ 0 },
};

struct acquire_times {
	uint64_t acquire, ping, info, release; /* ns, measured here */
};

static void acquire_json(const char *pool, const Hatchery__V1__AcquireReply *a,
			 const Hatchery__V1__VmInfoReply *vi,
			 const struct acquire_times *tm)
{
	struct json j = { 0 };
	json_open(&j, NULL, '{');
	json_str(&j, "pool", pool);
	json_u64(&j, "child_pid", a->child_pid);
	json_u64(&j, "child_id", a->child_id);
	json_bool(&j, "hit", a->hit);
	json_u64(&j, "wait_ns", a->wait_ns);
	json_open(&j, "vm", '{');
	json_u64(&j, "pid", vi->pid);
	json_str(&j, "pool", vi->pool);
	json_u64(&j, "child_id", vi->child_id);
	json_str(&j, "kind", vi->kind);
	json_u64(&j, "memory_mib", vi->memory_mib);
	json_u64(&j, "vcpus", vi->vcpus);
	json_i64(&j, "kvm_api_version", vi->kvm_api_version);
	json_bool(&j, "irqchip", vi->irqchip);
	json_bool(&j, "pit", vi->pit);
	json_u64(&j, "cpuid_entries", vi->cpuid_entries);
	json_u64(&j, "create_vm_ns", vi->create_vm_ns);
	json_u64(&j, "memory_ns", vi->memory_ns);
	json_u64(&j, "irqchip_ns", vi->irqchip_ns);
	json_u64(&j, "vcpus_ns", vi->vcpus_ns);
	json_open(&j, "guest_functions", '[');
	for (size_t i = 0; i < vi->n_guest_functions; i++)
		json_str(&j, NULL, vi->guest_functions[i]);
	json_close(&j, ']');
	json_u64(&j, "guest_boot_ns", vi->guest_boot_ns);
	json_str(&j, "kernel_release", vi->kernel_release);
	json_u64(&j, "guest_nproc", vi->guest_nproc);
	json_u64(&j, "linux_boot_ns", vi->linux_boot_ns);
	json_close(&j, '}');
	json_open(&j, "jail", '{');
	json_bool(&j, "jailed", vi->jailed);
	json_u64(&j, "uid", vi->uid);
	json_u64(&j, "gid", vi->gid);
	json_u64(&j, "supplementary_groups", vi->supplementary_groups);
	json_u64(&j, "cap_eff", vi->cap_eff);
	json_u64(&j, "cap_prm", vi->cap_prm);
	json_u64(&j, "cap_inh", vi->cap_inh);
	json_u64(&j, "cap_amb", vi->cap_amb);
	json_u64(&j, "cap_bnd", vi->cap_bnd);
	json_bool(&j, "no_new_privs", vi->no_new_privs);
	json_u64(&j, "seccomp_mode", vi->seccomp_mode);
	json_str(&j, "seccomp_action", vi->seccomp_action);
	json_u64(&j, "ns_mnt", vi->ns_mnt);
	json_u64(&j, "ns_pid", vi->ns_pid);
	json_u64(&j, "ns_net", vi->ns_net);
	json_u64(&j, "ns_ipc", vi->ns_ipc);
	json_u64(&j, "ns_uts", vi->ns_uts);
	json_u64(&j, "ns_cgroup", vi->ns_cgroup);
	json_u64(&j, "ns_user", vi->ns_user);
	json_str(&j, "cgroup", vi->cgroup);
	json_u64(&j, "rlimit_nofile", vi->rlimit_nofile);
	json_u64(&j, "rlimit_nproc", vi->rlimit_nproc);
	json_u64(&j, "rlimit_fsize", vi->rlimit_fsize);
	json_u64(&j, "rlimit_core", vi->rlimit_core);
	json_u64(&j, "rlimit_as", vi->rlimit_as);
	json_close(&j, '}');
	json_open(&j, "spawn_ns", '{');
	json_u64(&j, "fork", vi->fork_ns);
	json_u64(&j, "child_init", vi->child_init_ns);
	json_u64(&j, "jail_proc", vi->jail_proc_ns);
	json_u64(&j, "jail_pivot", vi->jail_pivot_ns);
	json_u64(&j, "jail_creds", vi->jail_creds_ns);
	json_u64(&j, "jail_limits", vi->jail_limits_ns);
	json_u64(&j, "jail_seccomp", vi->jail_seccomp_ns);
	json_u64(&j, "ready", vi->ready_ns);
	json_close(&j, '}');
	json_open(&j, "timing_ns", '{');
	json_u64(&j, "acquire", tm->acquire);
	json_u64(&j, "first_vm_ping", tm->ping);
	json_u64(&j, "info", tm->info);
	json_u64(&j, "release", tm->release);
	json_close(&j, '}');
	json_close(&j, '}');
	putchar('\n');
}

/* The VM section of the first table. */
static void vm_cells(struct table *t, const Hatchery__V1__VmInfoReply *vi)
{
	table_cell(t, "VM");
	table_cell(t, "%s", "");
	table_cell(t, "  pid");
	table_cell(t, "%u", vi->pid);
	table_cell(t, "  kind");
	table_cell(t, "%s", vi->kind);
	table_cell(t, "  memory");
	table_cell(t, "%u MiB", vi->memory_mib);
	table_cell(t, "  vcpus");
	table_cell(t, "%u", vi->vcpus);
	table_cell(t, "  kvm_api_version");
	table_cell(t, "%d", vi->kvm_api_version);
	table_cell(t, "  irqchip");
	table_cell(t, "%s", vi->irqchip ? "yes" : "no");
	table_cell(t, "  pit");
	table_cell(t, "%s", vi->pit ? "yes" : "no");
	table_cell(t, "  cpuid_entries");
	table_cell(t, "%u", vi->cpuid_entries);
	if (vi->n_guest_functions) { /* a booted VM (or one after a Load) */
		char fns[512];
		size_t n = 0;
		for (size_t i = 0; i < vi->n_guest_functions && n < sizeof(fns); i++)
			n += (size_t)snprintf(fns + n, sizeof(fns) - n, "%s%s", i ? " " : "",
					      vi->guest_functions[i]);
		table_cell(t, "  guest functions");
		table_cell(t, "%s", fns);
	}
	if (vi->kernel_release && *vi->kernel_release) { /* a Linux guest */
		table_cell(t, "  kernel");
		table_cell(t, "%s", vi->kernel_release);
		table_cell(t, "  guest cpus online");
		table_cell(t, "%u", vi->guest_nproc);
	}
}

/* The JAIL section of the first table: what the child reads of itself. */
static void jail_cells(struct table *t, const Hatchery__V1__VmInfoReply *vi)
{
	table_cell(t, "JAIL (seen from inside)");
	table_cell(t, "%s", vi->jailed ? "" : "NONE: hatcheryd runs with --no-jail");
	if (vi->jailed) {
		table_cell(t, "  uid/gid");
		table_cell(t, "%u/%u, %u supplementary groups", vi->uid, vi->gid,
			   vi->supplementary_groups);
		table_cell(t, "  CapEff/CapPrm/CapInh");
		table_cell(t, "%016llx %016llx %016llx",
			   (unsigned long long)vi->cap_eff,
			   (unsigned long long)vi->cap_prm,
			   (unsigned long long)vi->cap_inh);
		table_cell(t, "  CapAmb/CapBnd");
		table_cell(t, "%016llx %016llx", (unsigned long long)vi->cap_amb,
			   (unsigned long long)vi->cap_bnd);
		table_cell(t, "  NoNewPrivs");
		table_cell(t, "%d", vi->no_new_privs);
		table_cell(t, "  Seccomp");
		table_cell(t, "%u (%s)", vi->seccomp_mode,
			   vi->seccomp_mode == 2 ? vi->seccomp_action : "off");
		const struct { const char *n; uint64_t v; } ns[] = {
			{ "mnt", vi->ns_mnt }, { "pid", vi->ns_pid },
			{ "net", vi->ns_net }, { "ipc", vi->ns_ipc },
			{ "uts", vi->ns_uts }, { "cgroup", vi->ns_cgroup },
			{ "user", vi->ns_user },
		};
		for (size_t i = 0; i < HATCH_ARRAY_SIZE(ns); i++) {
			table_cell(t, "  ns %s", ns[i].n);
			table_cell(t, "%s:[%llu]", ns[i].n, (unsigned long long)ns[i].v);
		}
		table_cell(t, "  cgroup");
		table_cell(t, "%s", vi->cgroup);
		table_cell(t, "  RLIMIT_NOFILE/NPROC");
		table_cell(t, "%llu/%llu", (unsigned long long)vi->rlimit_nofile,
			   (unsigned long long)vi->rlimit_nproc);
		table_cell(t, "  RLIMIT_FSIZE/CORE");
		table_cell(t, "%llu/%llu", (unsigned long long)vi->rlimit_fsize,
			   (unsigned long long)vi->rlimit_core);
		table_cell(t, "  RLIMIT_AS");
		if (vi->rlimit_as == UINT64_MAX)
			table_cell(t, "unlimited");
		else
			table_cell(t, "%llu MiB", (unsigned long long)(vi->rlimit_as >> 20));
	}
}

/* The second table: the child's spawn and setup phases, and the steps
 * timed here. Sections of one table, so their numbers line up. */
static int times_table(const Hatchery__V1__AcquireReply *a,
		       const Hatchery__V1__VmInfoReply *vi,
		       const struct acquire_times *tm)
{
	struct table t = { .ncols = 2, .align = "lr" };
	table_cell(&t, "SPAWN (fork to ready)");
	table_cell(&t, "µs");
	table_cell(&t, "  fork (clone3, namespaces)");
	table_cell(&t, "%.1f", hx_ns_to_us(vi->fork_ns));
	table_cell(&t, "  child init");
	table_cell(&t, "%.1f", hx_ns_to_us(vi->child_init_ns));
	if (vi->jailed) {
		table_cell(&t, "  jail: /proc");
		table_cell(&t, "%.1f", hx_ns_to_us(vi->jail_proc_ns));
		table_cell(&t, "  jail: pivot_root");
		table_cell(&t, "%.1f", hx_ns_to_us(vi->jail_pivot_ns));
		table_cell(&t, "  jail: uid, caps");
		table_cell(&t, "%.1f", hx_ns_to_us(vi->jail_creds_ns));
		table_cell(&t, "  jail: rlimits, checks");
		table_cell(&t, "%.1f", hx_ns_to_us(vi->jail_limits_ns));
		table_cell(&t, "  jail: seccomp");
		table_cell(&t, "%.1f", hx_ns_to_us(vi->jail_seccomp_ns));
	}
	if (vi->guest_boot_ns) {
		table_cell(&t, "  guest boot (ELF to READY)");
		table_cell(&t, "%.1f", hx_ns_to_us(vi->guest_boot_ns));
	}
	if (vi->linux_boot_ns) {
		table_cell(&t, "  linux boot (kernel to agent)");
		table_cell(&t, "%.1f", hx_ns_to_us(vi->linux_boot_ns));
	}
	table_cell(&t, "  ready (total)");
	table_cell(&t, "%.1f", hx_ns_to_us(vi->ready_ns));
	table_cell(&t, "%s", "");
	table_cell(&t, "%s", "");
	table_cell(&t, "SETUP (in the child)");
	table_cell(&t, "µs");
	table_cell(&t, "  create_vm");
	table_cell(&t, "%.1f", hx_ns_to_us(vi->create_vm_ns));
	table_cell(&t, "  memory");
	table_cell(&t, "%.1f", hx_ns_to_us(vi->memory_ns));
	table_cell(&t, "  irqchip");
	table_cell(&t, "%.1f", hx_ns_to_us(vi->irqchip_ns));
	table_cell(&t, "  vcpus");
	table_cell(&t, "%.1f", hx_ns_to_us(vi->vcpus_ns));
	table_cell(&t, "  total");
	table_cell(&t, "%.1f", hx_ns_to_us(vi->create_vm_ns + vi->memory_ns +
					   vi->irqchip_ns + vi->vcpus_ns));
	table_cell(&t, "%s", "");
	table_cell(&t, "%s", "");
	table_cell(&t, "STEPS (from here)");
	table_cell(&t, "µs");
	table_cell(&t, "  acquire");
	table_cell(&t, "%.1f", hx_ns_to_us(tm->acquire));
	table_cell(&t, "    in hatcheryd");
	table_cell(&t, "%.1f", hx_ns_to_us(a->wait_ns));
	table_cell(&t, "  first VM ping");
	table_cell(&t, "%.1f", hx_ns_to_us(tm->ping));
	table_cell(&t, "  info");
	table_cell(&t, "%.1f", hx_ns_to_us(tm->info));
	table_cell(&t, "  release");
	table_cell(&t, "%.1f", hx_ns_to_us(tm->release));
	return table_flush(&t);
}

static int acquire_text(const char *pool, const Hatchery__V1__AcquireReply *a,
			const Hatchery__V1__VmInfoReply *vi,
			const struct acquire_times *tm)
{
	printf("leased child %llu (pid %u) of pool %s: %s\n\n",
	       (unsigned long long)a->child_id, a->child_pid, pool,
	       a->hit ? "hit, an idle child" : "miss, waited for a spawn");

	struct table t = { .ncols = 2, .align = "ll" };
	vm_cells(&t, vi);
	table_cell(&t, "%s", "");
	table_cell(&t, "%s", "");
	jail_cells(&t, vi);
	int r = table_flush(&t);
	if (r != HX_OK)
		return r;
	putchar('\n');
	return times_table(a, vi, tm);
}

/* Say which step on which child failed; a recv that ran into the socket
 * timeout only reads "Resource temporarily unavailable", so name it. */
static int vm_step_failed(struct hatch_err *err, const char *step,
			  const Hatchery__V1__AcquireReply *a, unsigned timeout_ms,
			  uint64_t elapsed_ns)
{
	if (err->code == E(UNAVAILABLE) && timeout_ms &&
	    elapsed_ns >= (uint64_t)timeout_ms * 1000000u)
		hatch_err_wrap(err, "no reply within %u ms", timeout_ms);
	hatch_err_wrap(err, "%s on child %llu (pid %u)", step,
		       (unsigned long long)a->child_id, a->child_pid);
	return hx_fail(err);
}

int cmd_acquire(const struct hx_ctx *cx, int argc, char **argv)
{
	struct hx_opts o = { .deadline_ms = DEFAULT_DEADLINE_MS };
	int r = hx_parse_cmd(argc, argv, acquire_opts, 1, "POOL", &o);
	if (r != HX_OK)
		return r;
	const char *pool = o.args[0];
	if (!*pool)
		return hx_usage_error("acquire: POOL must not be empty");

	struct hatch_err err = { 0 };
	struct acquire_times tm = { 0 };
	Hatchery__V1__AcquireReply *a = NULL;
	Hatchery__V1__VmInfoReply *vi = NULL;
	_cleanup_close_ int vm_fd = hx_lease_vm(cx, pool, o.deadline_ms, cx->timeout_ms,
						&a, &tm.acquire, &err);
	if (vm_fd < 0) {
		r = hx_fail(&err);
		goto out;
	}
	uint64_t t0 = hatch_now_ns();
	r = hatch_vm_ping(vm_fd, &err);
	tm.ping = hatch_now_ns() - t0;
	if (r < 0) {
		r = vm_step_failed(&err, "VM ping", a, cx->timeout_ms, tm.ping);
		goto out;
	}
	t0 = hatch_now_ns();
	r = hatch_vm_info(vm_fd, &vi, &err);
	tm.info = hatch_now_ns() - t0;
	if (r < 0) {
		r = vm_step_failed(&err, "VM info", a, cx->timeout_ms, tm.info);
		goto out;
	}
	t0 = hatch_now_ns();
	r = hatch_vm_release(steal_fd(&vm_fd), &err); /* closes the fd */
	tm.release = hatch_now_ns() - t0;
	if (r < 0) {
		r = vm_step_failed(&err, "VM release", a, cx->timeout_ms,
				   tm.release);
		goto out;
	}

	if (vi->child_id != a->child_id)
		fprintf(stderr,
			"%s: warning: the VM says it is child %llu, hatcheryd leased child %llu\n",
			hx_prog, (unsigned long long)vi->child_id,
			(unsigned long long)a->child_id);
	if (o.json) {
		acquire_json(pool, a, vi, &tm);
		r = HX_OK;
	} else {
		r = acquire_text(pool, a, vi, &tm);
	}
	if (r == HX_OK)
		r = hx_finish_stdout();
out:
	/* On a failed step vm_fd is still ours: closing it without Release
	 * makes the child tear down all the same. */
	hatch_free(vi);
	hatch_free(a);
	return r;
}
