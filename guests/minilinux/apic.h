/*
 * Local APIC registers and their fields (Intel SDM Vol. 3A ch. 10): the
 * register offsets from the APIC base (Table 10-1), the interrupt command
 * register (10.6.1), the logical destination and destination format
 * registers (10.6.2.2), the LVT entries (10.5.1), the timer's divide
 * configuration (10.5.4) and the spurious interrupt vector register (10.9).
 * Every APIC register access and ICR command goes through these names.
 */
#ifndef MINILINUX_APIC_H
#define MINILINUX_APIC_H

#include "kernel.h"

#define APIC_DEFAULT_BASE 0xFEE00000UL  /* 10.4.1 */

/* --- register offsets (Table 10-1) --- */
#define APIC_ID 0x20
#define APIC_VERSION 0x30
#define APIC_TPR 0x80
#define APIC_EOI 0xB0
#define APIC_LDR 0xD0
#define APIC_DFR 0xE0
#define APIC_SVR 0xF0
#define APIC_ISR 0x100                  /* 8 registers, 0x10 apart */
#define APIC_IRR 0x200                  /* 8 registers, 0x10 apart */
#define APIC_ESR 0x280
#define APIC_ICR_LOW 0x300
#define APIC_ICR_HIGH 0x310
#define APIC_LVT_TIMER 0x320
#define APIC_LVT_LINT0 0x350
#define APIC_LVT_LINT1 0x360
#define APIC_LVT_ERROR 0x370
#define APIC_TIMER_INITIAL 0x380
#define APIC_TIMER_CURRENT 0x390
#define APIC_TIMER_DIVIDE 0x3E0

/* --- local APIC ID register: the ID in bits 31:24 (10.4.6) --- */
#define APIC_ID_SHIFT 24

/* --- delivery mode, bits 10:8 of the ICR and of the LVT entries (10.6.1, 10.5.1) --- */
#define APIC_DM_FIXED (0 << 8)
#define APIC_DM_LOWEST (1 << 8)         /* lowest priority: ICR only */
#define APIC_DM_SMI (2 << 8)
#define APIC_DM_NMI (4 << 8)
#define APIC_DM_INIT (5 << 8)
#define APIC_DM_STARTUP (6 << 8)        /* ICR only; the vector is the start page */
#define APIC_DM_EXTINT (7 << 8)

/* --- interrupt command register, low half (10.6.1) --- */
#define APIC_ICR_LOGICAL (1 << 11)      /* destination mode: logical (clear: physical) */
#define APIC_ICR_PENDING (1 << 12)      /* delivery status: send pending */
#define APIC_ICR_ASSERT (1 << 14)       /* level: assert (clear: de-assert) */
#define APIC_ICR_LEVEL (1 << 15)        /* trigger mode: level (clear: edge) */
#define APIC_ICR_SELF (1 << 18)         /* destination shorthand, bits 19:18 */
#define APIC_ICR_ALL_INCLUDING_SELF (2 << 18)
#define APIC_ICR_ALL_EXCLUDING_SELF (3 << 18)

/* --- interrupt command register, high half: the destination in bits 31:24 --- */
#define APIC_ICR_DEST(dest) ((u32)(dest) << 24)

/* --- logical destination and destination format registers (10.6.2.2) --- */
#define APIC_LDR_ID(id) ((u32)(id) << 24)  /* logical APIC ID, bits 31:24 */
#define APIC_DFR_FLAT 0xFFFFFFFF        /* model 1111b in bits 31:28, the rest reserved (1) */
#define APIC_DFR_CLUSTER 0x0FFFFFFF     /* model 0000b */

/* --- LVT entries (10.5.1) --- */
#define APIC_LVT_MASKED (1 << 16)
#define APIC_LVT_TIMER_PERIODIC (1 << 17)  /* timer mode, bits 18:17: periodic (clear: one-shot) */

/* --- timer divide configuration register (10.5.4): bits 3, 1:0 --- */
#define APIC_TIMER_DIVIDE_BY_1 0xB

/* --- spurious interrupt vector register (10.9) --- */
#define APIC_SVR_ENABLE (1 << 8)        /* APIC software enable */

#endif
