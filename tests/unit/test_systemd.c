/* Unit tests for the pure parts of supervisor/systemd.c: the variables of
 * socket activation (sd_listen_fds(3)) and sd_notify(3), as systemd sets
 * them. The fd checks and the sending are in tests/integration/test_systemd.c. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stddef.h>
#include <string.h>

#include "systemd.h"

Test(systemd_env, listen_fds_for_us_only)
{
	cr_assert_eq(sup_sd_parse_listen("42", "1", 42), 1);
	cr_assert_eq(sup_sd_parse_listen("42", "3", 42), 3);
	/* Inherited from an activated parent: not ours. */
	cr_assert_eq(sup_sd_parse_listen("41", "1", 42), 0);
	/* Unset: not activated. */
	cr_assert_eq(sup_sd_parse_listen(NULL, "1", 42), 0);
	cr_assert_eq(sup_sd_parse_listen("42", NULL, 42), 0);
	cr_assert_eq(sup_sd_parse_listen("42", "0", 42), 0);
}

Test(systemd_env, listen_garbage_is_an_error)
{
	cr_assert_eq(sup_sd_parse_listen("42x", "1", 42), -EINVAL);
	cr_assert_eq(sup_sd_parse_listen("", "1", 42), -EINVAL);
	cr_assert_eq(sup_sd_parse_listen("42", "one", 42), -EINVAL);
	cr_assert_eq(sup_sd_parse_listen("42", "-1", 42), -EINVAL);
	cr_assert_eq(sup_sd_parse_listen("42", " 1", 42), -EINVAL);
	cr_assert_eq(sup_sd_parse_listen("42", "99999999999", 42), -EINVAL);
}

Test(systemd_env, notify_socket_path_and_abstract)
{
	struct sockaddr_un sa;
	socklen_t len;
	cr_assert_eq(sup_sd_notify_addr("/run/systemd/notify", &sa, &len), 0);
	cr_assert_str_eq(sa.sun_path, "/run/systemd/notify");
	cr_assert_eq(len, offsetof(struct sockaddr_un, sun_path) + strlen("/run/systemd/notify") + 1);

	cr_assert_eq(sup_sd_notify_addr("@/org/hatchery/n", &sa, &len), 0);
	cr_assert_eq(sa.sun_path[0], '\0', "abstract: a leading NUL");
	cr_assert_eq(memcmp(sa.sun_path + 1, "/org/hatchery/n", 15), 0);
	cr_assert_eq(len, offsetof(struct sockaddr_un, sun_path) + 16, "no trailing NUL counted");
}

Test(systemd_env, notify_socket_refusals)
{
	struct sockaddr_un sa;
	socklen_t len;
	char longp[200];
	memset(longp, 'a', sizeof(longp));
	longp[0] = '/';
	longp[sizeof(longp) - 1] = '\0';
	cr_assert_eq(sup_sd_notify_addr("", &sa, &len), -EINVAL);
	cr_assert_eq(sup_sd_notify_addr("relative/path", &sa, &len), -EINVAL);
	cr_assert_eq(sup_sd_notify_addr("@", &sa, &len), -EINVAL);
	cr_assert_eq(sup_sd_notify_addr(longp, &sa, &len), -EINVAL);
	cr_assert_eq(sup_sd_notify_addr("vsock:2:1234", &sa, &len), -EAFNOSUPPORT);
}

Test(systemd_env, watchdog)
{
	cr_assert_eq(sup_sd_parse_watchdog("30000000", NULL, 42), 30000000000ull);
	cr_assert_eq(sup_sd_parse_watchdog("30000000", "42", 42), 30000000000ull);
	cr_assert_eq(sup_sd_parse_watchdog("30000000", "41", 42), 0, "another pid's");
	cr_assert_eq(sup_sd_parse_watchdog(NULL, NULL, 42), 0);
	cr_assert_eq(sup_sd_parse_watchdog("0", NULL, 42), 0);
	cr_assert_eq(sup_sd_parse_watchdog("soon", NULL, 42), 0);
}
