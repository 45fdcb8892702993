"""API descriptions of the MQTT scenarios: smart-home, fleet, wearables, messenger.

Each function reads the scenario's knobs (QoS, counts) and its data files
(rooms, patients), never a run, and returns an :class:`~.model.ApiSpec`.
MQTT bindings (version 0.2.0): ``qos`` and ``retain`` on operations (for a
receive, the subscription's QoS), ``lastWill`` and ``cleanSession`` on the
server.
"""

from __future__ import annotations

from typing import Any

from .model import (EMPTY_TEXT, ApiSpec, ChannelSpec, MessageSpec, OperationSpec, array, boolean, integer,
                    names_param, number, obj, stamped, text)

__all__ = ["smart_home", "fleet", "wearables", "messenger", "mqtt_op", "status_message", "CLEARED"]

MQTT_BINDING = "0.2.0"

#: The empty retained message a scenario publishes at its end to leave the broker clean.
CLEARED = MessageSpec("cleared", "Retained value cleared",
                      "An empty retained message: MQTT's way to delete the value the broker keeps for a topic.",
                      EMPTY_TEXT, content_type="text/plain")


def mqtt_op(qos: int, retain: bool | None = None) -> dict[str, Any]:
    """MQTT operation bindings: QoS (0-2) and, for a publish, the retain flag."""
    out: dict[str, Any] = {"qos": int(qos), "bindingVersion": MQTT_BINDING}
    if retain is not None:
        out["retain"] = bool(retain)
    return {"mqtt": out}


def status_message(what: str) -> MessageSpec:
    """``online`` (retained, on connect) or ``offline`` (the retained last will), as plain text."""
    return MessageSpec("status", f"{what} status",
                       f"'online' published retained when the {what} connects; 'offline' is its last will, "
                       "published retained by the broker when the link dies without a DISCONNECT.",
                       text("plain text", enum=("online", "offline")), content_type="text/plain")


def _will(topic: str) -> dict[str, Any]:
    return {"mqtt": {"lastWill": {"topic": topic, "qos": 1, "message": "offline", "retain": True},
                     "bindingVersion": MQTT_BINDING}}


# ---------------------------------------------------------------------------------------------- smart home

def smart_home(s: Any) -> ApiSpec:
    from ...scenarios import data
    from ...scenarios.smart_home import pick_sensors

    picked = pick_sensors(data.sensors(), s.sensors)
    room = names_param("the room, from data/sensors.csv", [p.room for p in picked])
    kind = names_param("what the sensor measures", [p.kind for p in picked])
    heated = names_param("a room with a temperature sensor (the thermostat heats it)",
                         [p.room for p in picked if p.kind == "temperature"] or [p.room for p in picked])
    reading = MessageSpec("reading", "Sensor reading", "One reading of one sensor, stamped.", stamped({
        "sensor": text("the sensor id, room.kind", enum=[p.sensor_id for p in picked]),
        "room": text(enum=[p.room for p in picked]),
        "kind": text(enum=[p.kind for p in picked]),
        "value": number("the reading, in `unit`"),
        "unit": text("degC, %RH, ppm or lux", enum=[p.unit for p in picked]),
        "alert": boolean("the value is above the sensor's alert threshold"),
    }))
    command = MessageSpec("command", "Heater command", "The thermostat's command, stamped with the due time of "
                          "the reading that caused it.", stamped({
                              "room": text(enum=list(heated.enum) or None),
                              "heater": text(enum=("on", "off")),
                              "reading": number("the temperature that caused the command (degC)"),
                              "setpoint": number("the thermostat's target (degC)", minimum=5.0, maximum=30.0),
                              "cause": obj({"sensor": text("the sensor whose reading caused it"),
                                            "seq": integer("that reading's sequence number", minimum=0)}),
                          }))
    channels = (
        ChannelSpec("readings", "home/{room}/{kind}", "mqtt", "A sensor's readings, retained: a client that "
                    "subscribes later gets the last value at once.", (reading, CLEARED), {"room": room, "kind": kind}),
        ChannelSpec("statuses", "home/{room}/{kind}/status", "mqtt", "A sensor's presence: online, or its last "
                    "will.", (status_message("sensor"), CLEARED), {"room": room, "kind": kind}),
        ChannelSpec("heaterCommands", "home/{room}/heater/set", "mqtt", "The thermostat's commands to a room's "
                    "heater.", (command,), {"room": heated}),
    )
    operations = (
        OperationSpec("sensorSendsReading", "send", "readings", "A sensor publishes a reading (retained).",
                      messages=("reading",), bindings=mqtt_op(s.qos, True)),
        OperationSpec("dashboardReceivesReadings", "receive", "readings", "The dashboard, subscribed to home/#.",
                      messages=("reading",), bindings=mqtt_op(max(s.qos, 1))),
        OperationSpec("thermostatReceivesTemperatures", "receive", "readings",
                      "The thermostat, subscribed to home/+/temperature.", messages=("reading",),
                      bindings=mqtt_op(s.qos)),
        OperationSpec("sensorSendsStatus", "send", "statuses", "A sensor says 'online' when it connects (retained).",
                      messages=("status",), bindings=mqtt_op(1, True)),
        OperationSpec("dashboardReceivesStatuses", "receive", "statuses", "The dashboard sees sensors come and go "
                      "(the broker publishes a dead sensor's will).", messages=("status",),
                      bindings=mqtt_op(max(s.qos, 1))),
        OperationSpec("thermostatSendsCommand", "send", "heaterCommands", "One command per change of the wanted "
                      "heater state.", bindings=mqtt_op(s.command_qos, False)),
        OperationSpec("heaterReceivesCommands", "receive", "heaterCommands", "The heater, subscribed to "
                      "home/+/heater/set.", bindings=mqtt_op(s.command_qos)),
        OperationSpec("dashboardClearsReadings", "send", "readings", "At the end, an empty retained message per "
                      "topic clears what the run left.", messages=("cleared",), bindings=mqtt_op(0, True)),
        OperationSpec("dashboardClearsStatuses", "send", "statuses", "At the end, the statuses are cleared too.",
                      messages=("cleared",), bindings=mqtt_op(0, True)),
    )
    return ApiSpec("Sensors publish retained readings on a topic tree; a thermostat closes the loop to the heaters; "
                   "each sensor's last will marks it offline.", channels, operations,
                   {"mqtt": _will("home/{room}/{kind}/status")})


# ---------------------------------------------------------------------------------------------- fleet

def fleet(s: Any) -> ApiSpec:
    from ...scenarios import data
    from ...scenarios.fleet import DTC_CODES

    vans = [f"van-{i + 1:03d}" for i in range(s.vehicles)]
    vehicle = names_param("the vehicle, van-001, van-002...", vans)
    telemetry = MessageSpec("telemetry", "Vehicle telemetry", "Position, speed, fuel and fault codes, stamped.",
                            stamped({
                                "vehicle": text(enum=vans) if len(vans) <= 100 else text(pattern=r"^van-\d{3,}$"),
                                "route": text("the route id in data/routes.csv", enum=sorted(data.routes())),
                                "lat": number("latitude (deg)", minimum=-90, maximum=90),
                                "lon": number("longitude (deg)", minimum=-180, maximum=180),
                                "speed_kmh": number("speed (km/h)", minimum=0),
                                "heading_deg": number("heading (deg from north)", minimum=0, maximum=360),
                                "fuel_pct": number("fuel left (%)", minimum=0, maximum=100),
                                "odometer_km": number("distance driven this run (km)", minimum=0),
                                "dtc": array(text(enum=DTC_CODES), "a new diagnostic trouble code, if any",
                                             max_items=1),
                            }))
    session = "a persistent session (clean_session=False)" if s.persistent else "a clean session"
    channels = (
        ChannelSpec("telemetry", "fleet/{vehicleId}/telemetry", "mqtt", "One topic per vehicle.", (telemetry,),
                    {"vehicleId": vehicle}),
        ChannelSpec("status", "fleet/{vehicleId}/status", "mqtt", "A vehicle's presence: online, or its last will.",
                    (status_message("vehicle"), CLEARED), {"vehicleId": vehicle}),
    )
    operations = (
        OperationSpec("vehicleSendsTelemetry", "send", "telemetry", f"Each vehicle, {s.rate_hz:g} times a second.",
                      bindings=mqtt_op(s.qos, False)),
        OperationSpec("dispatcherReceivesTelemetry", "receive", "telemetry",
                      f"The dispatcher, subscribed to fleet/+/telemetry with {session}; its link drops "
                      f"{s.link_drops} time(s) for {s.outage_s:g} s.", bindings=mqtt_op(s.qos)),
        OperationSpec("vehicleSendsStatus", "send", "status", "A vehicle says 'online' when it connects.",
                      messages=("status",), bindings=mqtt_op(1, True)),
        OperationSpec("dispatcherReceivesStatus", "receive", "status", "Wills of broken-down vehicles.",
                      messages=("status",), bindings=mqtt_op(s.qos)),
        OperationSpec("dispatcherClearsStatus", "send", "status", "At the end, the retained statuses are cleared.",
                      messages=("cleared",), bindings=mqtt_op(0, True)),
    )
    return ApiSpec("Vehicles report telemetry on one topic each; a dispatcher follows them all with a wildcard "
                   "and survives link drops with QoS and a persistent session.", channels, operations,
                   {"mqtt": _will("fleet/{vehicleId}/status")})


# ---------------------------------------------------------------------------------------------- wearables

def wearables(s: Any) -> ApiSpec:
    from ...scenarios import data
    from ...scenarios.wearables import patients_in

    patients = patients_in(data.vitals())[:s.patients]
    profiles = [p for p in data.vitals() if p.patient_id in set(patients)]
    patient = names_param("the patient id, from data/vitals.csv", patients)
    vitals = [p.vital for p in profiles]
    units = [p.unit for p in profiles]
    vital = MessageSpec("vital", "Vital sign", "One reading of one vital sign, stamped.", stamped({
        "patient": text(enum=patients), "vital": text(enum=vitals), "value": number("in `unit`"),
        "unit": text(enum=units)}))
    alert = MessageSpec("alert", "Alert", "The monitor's alert when a vital sign leaves its normal range, stamped "
                        "with the due time of the reading that caused it.", stamped({
                            "patient": text(enum=patients), "vital": text(enum=vitals), "value": number("in `unit`"),
                            "unit": text(enum=units), "level": text(enum=("low", "high")),
                            "limit": number("the limit crossed, in `unit`"),
                            "reading_seq": integer("the reading's sequence number", minimum=0)}))
    channels = (
        ChannelSpec("vitals", "ward/{patientId}/{vital}", "mqtt", "One topic per patient and vital sign.", (vital,),
                    {"patientId": patient, "vital": names_param("the vital sign", vitals)}),
        ChannelSpec("alerts", "ward/{patientId}/alert", "mqtt", "Alerts about one patient.", (alert,),
                    {"patientId": patient}),
    )
    session = "persistent session (clean_session=False)" if s.persistent else "clean session"
    operations = (
        OperationSpec("wearableSendsVital", "send", "vitals", "Each wearable, at its vital's interval.",
                      bindings=mqtt_op(s.qos, False)),
        OperationSpec("monitorReceivesVitals", "receive", "vitals", f"The monitor, on ward/+/{{vital}} with a "
                      f"{session}; away {s.outage_s:g} s half-way.", bindings=mqtt_op(s.qos)),
        OperationSpec("monitorSendsAlert", "send", "alerts", "An alert per vital sign leaving its range.",
                      bindings=mqtt_op(s.qos, False)),
        OperationSpec("nursesReceiveAlerts", "receive", "alerts", "The nurses' station, on ward/+/alert.",
                      bindings=mqtt_op(s.qos)),
    )
    return ApiSpec("Wearables send vital signs; a monitor with a persistent session raises threshold alerts.",
                   channels, operations)


# ---------------------------------------------------------------------------------------------- messenger

def messenger(s: Any) -> ApiSpec:
    from ...scenarios.messenger import ROOMS, user_names

    users = user_names(s.users)
    rooms = list(ROOMS[:s.rooms])
    server = "mqtt_ws" if s.transport == "ws" else "mqtt"
    user_text = text(enum=users) if len(users) <= 100 else text()

    def chat(kind: str, to: dict[str, Any], title: str) -> MessageSpec:
        return MessageSpec(f"{kind}Message", title, f"A chat message ({kind}), stamped.", stamped({
            "from": user_text, "to": to, "kind": text(const=kind), "text": text("one to three chat phrases")}))

    dm = chat("dm", user_text, "Direct message")
    channels: list[ChannelSpec] = [
        ChannelSpec("inbox", "chat/{user}/inbox", server, "A user's inbox.", (dm,),
                    {"user": names_param("the user", users)}),
    ]
    operations = [
        OperationSpec("userSendsDirectMessage", "send", "inbox", "A user writes to another's inbox.",
                      bindings=mqtt_op(s.qos, False)),
        OperationSpec("userReceivesDirectMessages", "receive", "inbox", "Each user, on its own inbox.",
                      bindings=mqtt_op(s.qos)),
    ]
    if rooms:
        room = chat("room", text(enum=rooms), "Room message")
        channels.append(ChannelSpec("room", "chat/room/{room}", server, "A group room; every member subscribes "
                                    "(and, in MQTT 3.1.1, gets its own messages back).", (room,),
                                    {"room": names_param("the room", rooms)}))
        operations += [
            OperationSpec("memberSendsRoomMessage", "send", "room", "A member writes to a room.",
                          bindings=mqtt_op(s.qos, False)),
            OperationSpec("memberReceivesRoomMessages", "receive", "room", "Each member, on its rooms.",
                          bindings=mqtt_op(s.qos)),
        ]
    how = "MQTT over WebSockets (as a browser)" if s.transport == "ws" else "MQTT over TCP"
    return ApiSpec(f"Users chat in direct messages and rooms over {how}.", tuple(channels), tuple(operations))
