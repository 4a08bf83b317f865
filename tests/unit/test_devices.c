/* The Linux guest's device models without a VM: the bus's dispatch and
 * its unclaimed accesses, the 16550A as the kernel's 8250 probe sees it,
 * the console ring's bound and tail, the i8042's reset. The UART's
 * KVM_IRQ_LINE goes to fd -1 here and fails quietly, which the model
 * tolerates by design. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "devices/bus.h"
#include "devices/i8042.h"
#include "devices/uart.h"

static struct vmp_bus *bus;
static struct vmp_uart *uart;

static void setup(void)
{
	struct hatch_err err = { 0 };
	cr_assert_eq(vmp_bus_create(&bus, &err), 0);
	cr_assert_eq(vmp_uart_create(bus, -1, VMP_UART_COM1_BASE, VMP_UART_COM1_IRQ, &uart, &err),
		     0, "%s", err.msg);
	cr_assert_eq(vmp_i8042_attach(bus, &err), 0, "%s", err.msg);
}

static void teardown(void)
{
	vmp_uart_destroy(uart);
	vmp_bus_destroy(bus);
}

TestSuite(devices, .init = setup, .fini = teardown);

static uint8_t inb(uint16_t port)
{
	uint8_t v;
	cr_assert_eq(vmp_bus_access(bus, VMP_BUS_PIO, port, &v, 1, false), VMP_BUS_CONTINUE);
	return v;
}

static enum vmp_bus_action outb(uint16_t port, uint8_t v)
{
	return vmp_bus_access(bus, VMP_BUS_PIO, port, &v, 1, true);
}

#define COM1 VMP_UART_COM1_BASE

Test(devices, unclaimed_reads_all_ones_and_counts)
{
	uint8_t d[4];
	vmp_bus_access(bus, VMP_BUS_PIO, 0x2f8, d, 1, false);
	cr_assert_eq(d[0], 0xff);
	vmp_bus_access(bus, VMP_BUS_MMIO, 0xd0000000, d, 4, false);
	cr_assert_eq(memcmp(d, "\xff\xff\xff\xff", 4), 0);
	cr_assert_eq(outb(0x80, 1), VMP_BUS_CONTINUE);
	struct vmp_bus_stats st;
	vmp_bus_stats(bus, &st);
	cr_assert_eq(st.unknown_reads, 2);
	cr_assert_eq(st.unknown_writes, 1);
	cr_assert_eq(st.last_unknown_addr, 0x80);
	cr_assert_eq(st.last_unknown_space, VMP_BUS_PIO);
}

Test(devices, overlapping_registration_refused)
{
	static const struct vmp_bus_ops ops = { 0 };
	struct hatch_err err = { 0 };
	cr_assert_eq(vmp_bus_register(bus, VMP_BUS_PIO, 0x3fc, 8, &ops, NULL, &err), -1);
	cr_assert(strstr(err.msg, "overlaps"), "%s", err.msg);
	/* The same range in the other space is another address. */
	cr_assert_eq(vmp_bus_register(bus, VMP_BUS_MMIO, 0x3f8, 8, &ops, NULL, &err), 0);
	cr_assert_eq(vmp_bus_register(bus, VMP_BUS_PIO, 0x100, 0, &ops, NULL, &err), -1);
}

/* What drivers/tty/serial/8250/8250_port.c's autoconfig checks. */
Test(devices, probes_as_16550a)
{
	outb(COM1 + 7, 0xa5); /* scratch */
	cr_assert_eq(inb(COM1 + 7), 0xa5);
	outb(COM1 + 1, 0);
	cr_assert_eq(inb(COM1 + 1), 0);
	outb(COM1 + 1, 0x4f); /* IER with XScale's UUE bit: must not stick */
	cr_assert_eq(inb(COM1 + 1), 0x0f);
	outb(COM1 + 1, 0);
	outb(COM1 + 4, 0x10 | 0x0a); /* loopback, RTS, OUT2 */
	cr_assert_eq(inb(COM1 + 6) & 0xf0, 0x90, "loopback: CTS|DCD");
	outb(COM1 + 4, 0);
	outb(COM1 + 2, 0x01); /* FIFO on */
	cr_assert_eq(inb(COM1 + 2) & 0xc0, 0xc0, "IIR says FIFOs: 16550A");
	outb(COM1 + 3, 0x80); /* DLAB: divisor latch, not IER */
	outb(COM1 + 0, 0x01);
	outb(COM1 + 1, 0x00);
	cr_assert_eq(inb(COM1 + 0), 0x01);
	outb(COM1 + 3, 0x03);
	cr_assert_eq(inb(COM1 + 5) & 0x60, 0x60, "THRE and TEMT");
}

Test(devices, thr_interrupt_latched_until_iir_read)
{
	cr_assert_eq(inb(COM1 + 2) & 0x0f, 0x01, "no interrupt");
	outb(COM1 + 1, 0x02); /* THRI on, THR empty: pending at once */
	cr_assert_eq(inb(COM1 + 2) & 0x0f, 0x02);
	cr_assert_eq(inb(COM1 + 2) & 0x0f, 0x01, "cleared by the read");
	outb(COM1, 'x');
	cr_assert_eq(inb(COM1 + 2) & 0x0f, 0x02, "sent at once: empty again");
}

Test(devices, console_ring_bounded_with_tail)
{
	char line[64];
	for (int i = 0; i < 2000; i++) {
		int n = snprintf(line, sizeof(line), "line %04d\r\n", i);
		for (int k = 0; k < n; k++)
			outb(COM1, (uint8_t)line[k]);
	}
	uint64_t written, dropped;
	vmp_uart_counts(uart, &written, &dropped);
	cr_assert_eq(written, 2000 * 11);
	cr_assert_eq(dropped, 2000 * 10 - VMP_UART_RING, "'\\r' is not kept");
	char tail[128];
	vmp_uart_tail(uart, 2, tail, sizeof(tail));
	cr_assert_str_eq(tail, "line 1998\nline 1999\n");
	outb(COM1, 'p');
	vmp_uart_tail(uart, 1, tail, sizeof(tail));
	cr_assert_str_eq(tail, "p", "a partial last line is a line");
	vmp_uart_tail(uart, 3, tail, 8);
	cr_assert_str_eq(tail, " 1999\np", "cut to the buffer, oldest part first");
	static char all[VMP_UART_RING + 1];
	cr_assert_eq(vmp_uart_tail(uart, 100000, all, sizeof(all)), VMP_UART_RING);
}

Test(devices, loopback_output_is_not_console)
{
	outb(COM1 + 4, 0x10);
	outb(COM1, 'z');
	outb(COM1 + 4, 0);
	uint64_t written, dropped;
	vmp_uart_counts(uart, &written, &dropped);
	cr_assert_eq(written, 0);
}

Test(devices, i8042_reset)
{
	cr_assert_eq(inb(0x64) & 0x02, 0, "input buffer empty");
	cr_assert_eq(outb(0x64, 0xd1), VMP_BUS_CONTINUE);
	cr_assert_eq(outb(0x60, 0xfe), VMP_BUS_CONTINUE, "0xFE as data is not the command");
	cr_assert_eq(outb(0x64, 0xfe), VMP_BUS_RESET);
}
