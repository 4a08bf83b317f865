/* uart.h - an 8250/16550A on COM1 (ports 0x3F8..0x3FF, IRQ 4): the Linux
 * guest's console (docs/guest-linux.md).
 *
 * Enough of a 16550A for the kernel's 8250 driver to probe it as one
 * (scratch register, loopback MSR, FIFO bits in IIR) and to drive it by
 * interrupts: the THR-empty interrupt is raised and lowered on IRQ 4 with
 * KVM_IRQ_LINE (the in-kernel IOAPIC pin 4, edge, as on a PC). A byte
 * written to THR is "sent" at once. Nothing is ever received: the line is
 * output only (the agent talks over virtio-console, not here).
 *
 * Output goes to a bounded ring (VMP_UART_RING bytes; when full the oldest
 * bytes go and are counted), so a guest flooding its console costs a fixed
 * amount of memory; '\r' is dropped, the ring is text for error messages.
 * vmp_uart_tail gives its last lines.
 *
 * Lifecycle: vmp_uart_create registers the device on the bus, which must
 * outlive no vCPU: destroy the UART after the vCPU threads have stopped
 * and before (or after) the bus; the UART owns nothing but its memory.
 * The VM fd is borrowed.
 */
#ifndef HATCHERY_VMP_DEVICES_UART_H
#define HATCHERY_VMP_DEVICES_UART_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "devices/bus.h"
#include "hatchery/error.h"
#include "snapshot.h"

#define VMP_UART_COM1_BASE 0x3f8
#define VMP_UART_COM1_IRQ  4
#define VMP_UART_RING      (16u << 10)

struct vmp_uart;

/* A UART at `port` raising `irq` on the VM `vm_fd`, registered on bus. */
int vmp_uart_create(struct vmp_bus *bus, int vm_fd, uint16_t port, unsigned irq,
		    struct vmp_uart **out, struct hatch_err *err);
void vmp_uart_destroy(struct vmp_uart *u);

/* Also copy every complete line to fd as it comes (a debugging aid for
 * tools: the write happens on the vCPU thread, under the bus mutex).
 * -1 turns it off. The fd is borrowed. */
void vmp_uart_set_echo(struct vmp_uart *u, int fd);

/* The last `nlines` lines of output (a partial last line counts as one)
 * into buf, NUL-terminated, at most cap - 1 bytes (the oldest part cut if
 * they do not fit). Returns the length. Takes the bus mutex. */
size_t vmp_uart_tail(struct vmp_uart *u, unsigned nlines, char *buf, size_t cap);

/* The registers a guest's driver sees, for a snapshot's devices section
 * (struct snap_uart, snapshot/'s record). The output ring is not state: it
 * is what the guest said, kept for messages. Both take the bus mutex.
 * Restore sets the registers, empties the output ring (an earlier guest's
 * lines are not the restored one's) and drives the interrupt line to the
 * level the registers give (KVM_IRQ_LINE), whatever it was. */
void vmp_uart_save(struct vmp_uart *u, struct snap_uart *s);
void vmp_uart_restore(struct vmp_uart *u, const struct snap_uart *s);

/* Bytes written by the guest in all, and how many the ring dropped. */
void vmp_uart_counts(struct vmp_uart *u, uint64_t *written, uint64_t *dropped);

#endif
