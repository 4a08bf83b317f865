/* Unit tests for the pure parts of supervisor/cgroup.c: finding the cgroup2
 * mount, checking controllers, path and cpu.max strings. */
#include <criterion/criterion.h>
#include <string.h>

#include "cgroup.h"

/* This machine's mountinfo: cgroup v1 for everything, v2 beside it. */
static const char *const hybrid =
	"31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
	"35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
	"39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids\n"
	"41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";

Test(cgroup, finds_v2_mount_in_hybrid)
{
	char out[256];
	cr_assert_eq(sup_cgroup_find_v2_mount(hybrid, out, sizeof(out)), 0);
	cr_assert_str_eq(out, "/sys/fs/cgroup/unified");
}

Test(cgroup, finds_v2_mount_with_optional_fields_and_escapes)
{
	const char *mi =
		"22 1 0:5 / /proc rw - proc proc rw\n"
		"30 22 0:26 / /sys/fs/my\\040cg rw,nosuid shared:4 master:1 - cgroup2 "
		"cgroup2 rw,nsdelegate\n";
	char out[256];
	cr_assert_eq(sup_cgroup_find_v2_mount(mi, out, sizeof(out)), 0);
	cr_assert_str_eq(out, "/sys/fs/my cg");
}

Test(cgroup, no_v2_mount)
{
	char out[256];
	const char *mi = "35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n";
	cr_assert_eq(sup_cgroup_find_v2_mount(mi, out, sizeof(out)), -1);
	cr_assert_eq(sup_cgroup_find_v2_mount("", out, sizeof(out)), -1);
	/* "cgroup2" as a mount point name, not the fs type: not a match. */
	mi = "35 31 0:32 / /cgroup2 rw - tmpfs cgroup2 rw\n";
	cr_assert_eq(sup_cgroup_find_v2_mount(mi, out, sizeof(out)), -1);
}

Test(cgroup, too_long_mount_point)
{
	char out[8];
	cr_assert_eq(sup_cgroup_find_v2_mount(hybrid, out, sizeof(out)), -1);
}

Test(cgroup, controllers)
{
	char miss[64];
	cr_assert_eq(sup_cgroup_missing_controllers("hugetlb\n", miss, sizeof(miss)), 3);
	cr_assert_str_eq(miss, "memory pids cpu");
	cr_assert_eq(sup_cgroup_missing_controllers("cpuset cpu io memory hugetlb pids rdma misc\n",
						    miss, sizeof(miss)), 0);
	cr_assert_str_eq(miss, "");
	/* "cpuset" is not "cpu". */
	cr_assert_eq(sup_cgroup_missing_controllers("cpuset memory pids", miss, sizeof(miss)), 1);
	cr_assert_str_eq(miss, "cpu");
	cr_assert_eq(sup_cgroup_missing_controllers("", miss, sizeof(miss)), 3);
}

Test(cgroup, child_path)
{
	char out[64];
	cr_assert_eq(sup_cgroup_child_path(out, sizeof(out), "/sys/fs/cgroup/hatchery",
					   "default", 42), 0);
	cr_assert_str_eq(out, "/sys/fs/cgroup/hatchery/default/child-42");
	char small[16];
	cr_assert_eq(sup_cgroup_child_path(small, sizeof(small), "/sys/fs/cgroup/hatchery",
					   "default", 42), -1);
}

Test(cgroup, cpu_max)
{
	char out[32];
	sup_cgroup_cpu_max(100, out, sizeof(out));
	cr_assert_str_eq(out, "100000 100000");
	sup_cgroup_cpu_max(50, out, sizeof(out));
	cr_assert_str_eq(out, "50000 100000");
	sup_cgroup_cpu_max(250, out, sizeof(out));
	cr_assert_str_eq(out, "250000 100000");
	sup_cgroup_cpu_max(0, out, sizeof(out));
	cr_assert_str_eq(out, "max 100000");
}

Test(cgroup, own_v2_cgroup_from_proc_self_cgroup)
{
	/* Under systemd (cgroup v2 only) and on a hybrid host. */
	cr_assert_str_eq(sup_cgroup_v2_self("0::/system.slice/hatcheryd.service\n"),
			 "/system.slice/hatcheryd.service\n");
	cr_assert_str_eq(sup_cgroup_v2_self("12:pids:/x\n3:memory:/x\n0::/user.slice\n"),
			 "/user.slice\n");
	cr_assert_null(sup_cgroup_v2_self("12:pids:/x\n3:memory:/x\n"));
	cr_assert_null(sup_cgroup_v2_self(""));
}
