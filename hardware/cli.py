"""`rimba hw power`: awake time, mAh per day and battery life of a profile, with a plot against the
sending interval."""

from __future__ import annotations

from hardware import power
from rimba.errors import ConfigError


def main(args) -> int:
    try:
        battery = power.Battery.parse(args.battery)
        sample = power.parse_duration(args.sample)
        send = power.parse_duration(args.send)
        day = power.planned_day(args.profile, sample, send)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    if send < sample:
        raise ConfigError(f"--send {args.send} is shorter than --sample {args.sample}: a node sends what it sampled")
    sleep_ua = args.sleep_ua if args.sleep_ua is not None else power.BOARDS[args.board]
    b = power.budget(day, battery, sleep_ua, args.static_ip)
    print(f"profile {args.profile}: sample every {args.sample}, send every {args.send}, {args.battery} "
          f"({battery.capacity_mah:,.0f} mAh, {battery.usable:.0%} usable), deep sleep {sleep_ua:g} µA")
    print(f"  awake {b.awake_s_per_day / 60:.1f} min per day ({day.wakes:.0f} wakes, {day.wifi:.0f} Wi-Fi connects)")
    print(f"  {b.mah_per_day:.2f} mAh per day: awake {b.mah_awake:.2f}, asleep {b.mah_sleep:.2f}, battery divider "
          f"{b.mah_divider:.2f}, the cells' self-discharge {b.mah_self_discharge:.2f}; their capacity fading "
          f"{b.mah_fade_day:.2f} mAh a day (at {battery.temp_c:g} °C)")
    print(f"  battery life {b.days:,.0f} days ({b.days / power.DAYS_PER_MONTH:.1f} months) without solar")
    if not battery.rest_losses_modelled:
        print(f"  note: the fade and self-discharge are an 18650 Li-ion cell's (INR18650-30Q); {args.battery}'s own "
              "are not modelled: take the life above as a rough figure")
    if args.plot:
        plot(args, battery, sample, sleep_ua)
        print(f"  plot: {args.plot}")
    return 0


def plot(args, battery, sample, sleep_ua) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    sends = np.unique(np.clip(np.geomspace(sample, 86400, 40), sample, None))
    fig, ax = plt.subplots(figsize=(7, 4))
    for board, ua in sorted({**power.BOARDS, "this board": sleep_ua}.items(), key=lambda kv: kv[1]):
        if ua > 5000:
            continue
        life = [power.budget(power.planned_day(args.profile, sample, s), battery, ua, args.static_ip).days / 30.4
                for s in sends]
        ax.plot(sends / 3600, life, label=f"{board} ({ua:g} µA asleep)", lw=2 if board == "this board" else 1)
    ax.axhline(12, color="grey", ls="--", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("sending interval, hours")
    ax.set_ylabel("battery life, months")
    ax.set_title(f"{args.profile}: sampling every {args.sample} on {args.battery}")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(args.plot, dpi=100)
    plt.close(fig)
