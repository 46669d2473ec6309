/*
 * OSV's interface as its kernels see it: ICR writes and hypercalls
 * (issue 11, part 3; the 2013 paper's "Interrupt virtualization" and
 * hypercall sections).
 *
 * KERNELS kernels of CORES cores each; kernel MALICIOUS does anything the
 * interface lets a kernel do, at any time, from any of its running cores
 * (any ICR class, any hypercall class, INIT/SIPI and SHUTDOWN included);
 * every other kernel is honest and runs the boot protocol: its BSP sends
 * INIT, INIT de-assert, STARTUP, STARTUP to each AP (Intel SDM Vol. 3A
 * 8.4.4.1, 10.4.4), waits for them, reads its channel, NOTIFYs its peer
 * (the next honest kernel) over the channel, waits for its own
 * notification, and calls SHUTDOWN.
 *
 * This file holds the protocol and the properties only.  Every decision
 * OSV takes -- which cores an ICR write reaches, what a hypercall returns,
 * writes or notifies -- comes from osv_tables.pml, which
 * osvemu/verify/spin.py generates by calling the Python policy
 * (osvemu.osv.ipi_policy.route_ipi, osvemu.osv.hypercalls.handle) on every
 * class of message for the chosen layout.  The same generator defines the
 * constants (core states, effect kinds, sentinel codes) and the tables
 * (tab_*); they are declared there once.
 *
 * Properties: every assert() carries a "property:" comment that
 * osvemu/verify/spin.py quotes when it fails; "every honest kernel
 * eventually finishes" is the LTL formula honest_finish, checked under weak
 * fairness (pan -a -f); deadlock is an invalid end state in the safety run.
 */

#include "osv_tables.pml"

byte cstate[NCORES];        /* CORE_WAIT_SIPI, CORE_RUNNING or CORE_STOPPED (osvemu/cpu/lifecycle.py) */
bool notified[KERNELS];     /* the channel's agreed vector is pending at the kernel */
bool finished[KERNELS];     /* the kernel called SHUTDOWN and OSV stopped its cores */

/* Scratch of one atomic step: not part of the state vector. */
hidden int h_mask;
hidden byte h_kind, h_vec, h_core, h_write, h_target, h_vclass;
hidden byte h_shutdown;

ltl honest_finish { <> ALL_HONEST_DONE }

/* Carry out one ICR write's routing decision, as ApicBus.carry_out does:
 * each core in the delivery mask gets the message of its delivery mode. */
inline deliver(sender, mask, kind, vec) {
    h_core = 0;
    do
    :: h_core < NCORES ->
        if
        :: (mask >> h_core) & 1 ->
            assert(tab_owner[h_core] == sender);  /* property: every delivery lands in the sender's kernel */
            assert(kind != E_SMI && kind != E_RESERVED);  /* property: SMI and ExtINT/reserved-mode messages are never delivered */
            if
            :: kind == E_INIT ->
                cstate[h_core] = CORE_WAIT_SIPI  /* SDM Vol. 3A 10.4.7.3: wait for a STARTUP IPI */
            :: kind == E_STARTUP && cstate[h_core] == CORE_WAIT_SIPI ->
                assert(tab_owner[h_core] == sender && tab_sipi_low[h_core * NVECTORS + vec]);  /* property: a core is started only by a STARTUP from its own kernel at a vector inside its own low memory */
                cstate[h_core] = CORE_RUNNING
            :: else -> skip  /* an interrupt or NMI the kernel handles, INIT de-assert, a STARTUP to a core not waiting */
            fi
        :: else -> skip
        fi;
        h_core++
    :: else -> break
    od;
    h_core = 0
}

/* Stop every core of kernel k (a SHUTDOWN: the kernel's end). */
inline stop_kernel(k) {
    h_core = 0;
    do
    :: h_core < CORES -> cstate[tab_core[k * CORES + h_core]] = CORE_STOPPED; h_core++
    :: else -> break
    od;
    h_core = 0;
    finished[k] = true
}

/* Carry out one hypercall's outcome (OsvMonitor.hypercall and the machine). */
inline hypercall(caller, write, target, vclass, shutdown) {
    assert(write == NO_WRITE || write == caller);  /* property: hypercall writes land only in the caller's RAM */
    if
    :: target != NO_NOTIFY ->
        assert(target < KERNELS && target != caller && tab_route[(caller * KERNELS + target) * NVCLASSES + vclass]);  /* property: notifies go only along channel routes */
        if
        :: vclass == VC_AGREED -> notified[target] = true
        :: else -> skip  /* another vector: an interrupt the kernel tolerates */
        fi
    :: else -> skip
    fi;
    if
    :: shutdown -> stop_kernel(caller)
    :: else -> skip
    fi
}

/* An honest hypercall from the BSP, retried until it succeeds. */
inline honest_call(k, call) {
    do
    :: d_step {
           BSP_RUNNING(k) ->
           hypercall(k, tab_hc_write[k * HONEST_CALLS + call], tab_hc_target[k * HONEST_CALLS + call],
                     tab_hc_vclass[k * HONEST_CALLS + call], tab_hc_shutdown[k * HONEST_CALLS + call]);
           printf("EVENT k%d: honest hypercall %d\n", k, call)
       };
       if
       :: tab_hc_ok[k * HONEST_CALLS + call] -> break
       :: else -> skip
       fi
    od
}

proctype honest(byte k) {
    byte step;
    assert(tab_owner[tab_bsp[k]] == k && BSP_RUNNING(k));  /* property: each kernel's BSP is its own core, the one OSV started */
    do
    :: d_step {
           step < BOOT_STEPS && BSP_RUNNING(k) ->
           deliver(k, tab_boot_mask[k * BOOT_STEPS + step], tab_boot_kind[k * BOOT_STEPS + step],
                   tab_boot_vector[k * BOOT_STEPS + step]);
           printf("EVENT k%d: boot ICR write %d\n", k, step);
           step++
       }
    :: step == BOOT_STEPS -> break
    od;
    KERNEL_UP(k);  /* every AP is running */
    honest_call(k, HC_DESCRIBE_CHANNEL);
    if
    :: tab_peer[k] != NO_PEER ->
        honest_call(k, HC_NOTIFY);
        BSP_RUNNING(k) && notified[k]
    :: else -> skip
    fi;
    honest_call(k, HC_SHUTDOWN)
}

proctype malicious() {
end_malicious:
    do
    :: atomic {
           MALICIOUS_RUNNING ->
           malicious_icr();
           d_step { deliver(MALICIOUS, h_mask, h_kind, h_vec) }
       }
    :: atomic {
           MALICIOUS_RUNNING ->
           malicious_hypercall();
           d_step { hypercall(MALICIOUS, h_write, h_target, h_vclass, h_shutdown) }
       }
    od
}

init {
    atomic {
        d_step { load_tables() };
        start_kernels()
    }
}
