/* config_keys.h - the key tables of hatcheryd's configuration and what
 * parses one value; internal to config.c and config_keys.c (config.h is
 * the public face).
 *
 * Adding a config key: a field in config.h, a row in config_keys.c's
 * table (with its range), its default in cfg_pool_defaults() or parse(),
 * and any check across keys in config.c's check().
 */
#ifndef HATCHERY_SUP_CONFIG_KEYS_H
#define HATCHERY_SUP_CONFIG_KEYS_H

#include <stddef.h>

#include "config.h"
#include "hatchery/v1/common.pb-c.h"

#define CONFIG_ERR HATCHERY__V1__ERROR_CODE__INVALID_ARGUMENT

#define DEFAULT_SOCKET_PATH "/run/hatchery/hatchery.sock"
#define DEFAULT_SOCKET_MODE 0666
#define DEFAULT_JAIL_UID_BASE 200000

/* uid_t is 32 bits; (uid_t)-1 means "no change" to chown() and is no user. */
#define UID_VALID_MAX 4294967294UL

/* A parser reads `value` into the field at `base + k->offset` and returns 0,
 * or returns -1 having written what it expected (completing "expected ...")
 * into `exp`. It writes the field only on success. */
struct key_spec;
typedef int (*key_parser)(const struct key_spec *k, const char *value,
			  void *base, char *exp, size_t exp_len);

struct key_spec {
	const char *key;
	key_parser parse;
	size_t offset;     /* of the field in the section's struct */
	unsigned long min; /* meaning is the parser's: a range, a length */
	unsigned long max;
};

/* The rows of each table (checked against the tables at compile time). */
#define CFG_N_SUPERVISOR_KEYS 5
#define CFG_N_POOL_KEYS 27
extern const struct key_spec *const cfg_supervisor_keys; /* [CFG_N_SUPERVISOR_KEYS] */
extern const struct key_spec *const cfg_pool_keys;       /* [CFG_N_POOL_KEYS] */

/* The row for `key` in table[n], or NULL. */
const struct key_spec *cfg_find_key(const struct key_spec *table, size_t n,
				    const char *key);

/* A pool section's values before its keys are read. */
void cfg_pool_defaults(struct sup_pool_config *p);

#endif
