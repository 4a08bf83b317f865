/* qemu_guest.h - the build's kernel and initramfs booted in QEMU (microvm,
 * TCG), the agent reached over a virtserialport: shared by test_agent_qemu.c
 * and test_vhost_qemu_guest.c. Asserts (Criterion) rather than returning
 * errors; QEMU dies with the test's process (PR_SET_PDEATHSIG).
 */
#ifndef HATCH_TEST_QEMU_GUEST_H
#define HATCH_TEST_QEMU_GUEST_H

#include "unit/agent_client.h"

/* Boot and wait for the agent's hello. `machine` is -M's value (microvm
 * with acpi=on at least); `extra` (NULL-terminated, or NULL) is appended to
 * QEMU's arguments. The returned agent's dir (a fresh temp dir) holds
 * console.log and qemu.log; `dir`, if given, is used instead of making one
 * (it must exist; qemu_shutdown removes it either way). */
struct agent qemu_boot(const char *dir, const char *machine, const char *const *extra);

/* Kill QEMU, reap it, remove the dir. */
void qemu_shutdown(struct agent *a);

#endif
