/*
 * dsdt.asl - the DSDT of a Linux guest (docs/guest-linux.md): the
 * virtio-mmio devices, described the way a stock kernel finds them
 * (_HID "LNRO0005", driver virtio_mmio's ACPI match): device i is 4 KiB of
 * MMIO at 0xD0000000 + 0x1000 * i and GSI 5 + i, edge, active high.
 *
 * Compiled by iasl at build time (CMake: dsdt.hex, a C array included by
 * acpi.c). How many devices the guest sees is decided at run time, without
 * recompiling: NDEV below is a DWord placeholder that acpi.c overwrites in
 * the AML (found by its NameOp and name, checked against the placeholder
 * value) before it fixes the checksum; each device's _STA compares its
 * index with NDEV, and the kernel skips a device whose _STA says "absent".
 * Device 0, the agent's console, has no _STA: it is always present.
 *
 * COM1 is here too, although the 8250 driver finds it at its legacy port
 * without ACPI: under hardware-reduced ACPI the kernel has no legacy PIC
 * and maps no ISA IRQ to an IOAPIC pin by itself, so the legacy port's
 * IRQ 4 cannot be requested and opening /dev/ttyS0 (hence /dev/console,
 * what init writes to) fails. Described here, 8250_pnp takes the port
 * over with IRQ 4 mapped through ACPI, as Firecracker and Cloud Hypervisor
 * describe theirs.
 */
DefinitionBlock ("dsdt.aml", "DSDT", 2, "HATCH ", "HATCHDSD", 1)
{
    Name (NDEV, 0x4E444556)     /* placeholder: patched to 1..4 by acpi.c */

    Scope (\_SB)
    {
        Device (COM1)
        {
            Name (_HID, EisaId ("PNP0501"))
            Name (_UID, One)
            Name (_CRS, ResourceTemplate ()
            {
                IO (Decode16, 0x03F8, 0x03F8, 0x00, 0x08)
                IRQNoFlags () { 4 }
            })
        }
        Device (VR00)
        {
            Name (_HID, "LNRO0005")
            Name (_UID, Zero)
            Name (_CCA, One)    /* cache-coherent DMA: virtqueues in guest RAM */
            Name (_CRS, ResourceTemplate ()
            {
                Memory32Fixed (ReadWrite, 0xD0000000, 0x00001000)
                Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive) { 5 }
            })
        }
        Device (VR01)
        {
            Name (_HID, "LNRO0005")
            Name (_UID, One)
            Name (_CCA, One)
            Method (_STA, 0, NotSerialized)
            {
                If (NDEV > One) { Return (0x0F) }
                Return (Zero)
            }
            Name (_CRS, ResourceTemplate ()
            {
                Memory32Fixed (ReadWrite, 0xD0001000, 0x00001000)
                Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive) { 6 }
            })
        }
        Device (VR02)
        {
            Name (_HID, "LNRO0005")
            Name (_UID, 2)
            Name (_CCA, One)
            Method (_STA, 0, NotSerialized)
            {
                If (NDEV > 2) { Return (0x0F) }
                Return (Zero)
            }
            Name (_CRS, ResourceTemplate ()
            {
                Memory32Fixed (ReadWrite, 0xD0002000, 0x00001000)
                Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive) { 7 }
            })
        }
        Device (VR03)
        {
            Name (_HID, "LNRO0005")
            Name (_UID, 3)
            Name (_CCA, One)
            Method (_STA, 0, NotSerialized)
            {
                If (NDEV > 3) { Return (0x0F) }
                Return (Zero)
            }
            Name (_CRS, ResourceTemplate ()
            {
                Memory32Fixed (ReadWrite, 0xD0003000, 0x00001000)
                Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive) { 8 }
            })
        }
    }
}
