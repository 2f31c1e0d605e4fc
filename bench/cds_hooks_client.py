"""A stand-in EHR for the CDS Hooks service: its keys, signed JWTs and an order-sign call.

    python bench/cds_hooks_client.py keys DIR            # DIR/private.jwk (keep) and DIR/jwks.json (for cds-clients add)
    python bench/cds_hooks_client.py token DIR ISS URL [N]  # N signed JWTs (default 1), one a line, aud = URL
    python bench/cds_hooks_client.py order-sign          # an order-sign call: Privigen 137 g for CIDP (G61.81)

README "Order entry from the EHR" uses it; bench/cds_hooks_load.sh signs its calls with it.
"""

import json
import sys
import time
import uuid
from pathlib import Path

import jwt
from cryptography.hazmat.primitives.asymmetric import ec

KID = "bench-ehr-1"


def keys(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    private = ec.generate_private_key(ec.SECP384R1())
    private_jwk = {**json.loads(jwt.algorithms.ECAlgorithm.to_jwk(private)), "kid": KID, "alg": "ES384"}
    public_jwk = {k: v for k, v in private_jwk.items() if k != "d"}
    (folder / "private.jwk").write_text(json.dumps(private_jwk))
    (folder / "private.jwk").chmod(0o600)
    (folder / "jwks.json").write_text(json.dumps({"keys": [public_jwk]}))


def tokens(folder: Path, iss: str, aud: str, count: int) -> list[str]:
    key = jwt.PyJWK(json.loads((folder / "private.jwk").read_text()))
    now = int(time.time())
    return [
        jwt.encode(
            {"iss": iss, "aud": aud, "iat": now, "exp": now + 300, "jti": str(uuid.uuid4())},
            key,
            algorithm="ES384",
            headers={"kid": KID, "typ": "JWT"},
        )
        for _ in range(count)
    ]


def order_sign() -> dict:
    def observation(code, value, unit):
        return {
            "resourceType": "Bundle",
            "type": "searchset",
            "entry": [
                {
                    "resource": {
                        "resourceType": "Observation",
                        "status": "final",
                        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
                        "valueQuantity": {
                            "value": value,
                            "unit": unit,
                            "system": "http://unitsofmeasure.org",
                            "code": unit,
                        },
                        "effectiveDateTime": "2026-11-01",
                    }
                }
            ],
        }

    order = {
        "resourceType": "MedicationRequest",
        "id": "ivig-1",
        "status": "draft",
        "intent": "order",
        "subject": {"reference": "Patient/example-1"},
        "authoredOn": "2026-11-30",
        "medicationCodeableConcept": {"text": "Privigen 10% (immune globulin intravenous)"},
        "reasonCode": [{"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "G61.81"}]}],
        "dosageInstruction": [
            {
                "timing": {"repeat": {"frequency": 1, "period": 3, "periodUnit": "wk"}},
                "doseAndRate": [
                    {"doseQuantity": {"value": 137, "unit": "g", "system": "http://unitsofmeasure.org", "code": "g"}}
                ],
            }
        ],
    }
    return {
        "hook": "order-sign",
        "hookInstance": str(uuid.uuid4()),
        "context": {
            "userId": "Practitioner/example",
            "patientId": "example-1",
            "draftOrders": {"resourceType": "Bundle", "entry": [{"resource": order}]},
        },
        "prefetch": {
            "patient": {"resourceType": "Patient", "id": "example-1", "birthDate": "1972-03-04", "gender": "male"},
            "conditions": None,
            "medications": None,
            "weight": observation("29463-7", 70, "kg"),
            "height": observation("8302-2", 175, "cm"),
            "pregnancy": None,
            "igg_serum": None,
            "platelets": None,
        },
    }


if __name__ == "__main__":
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    if command == "keys":
        keys(Path(sys.argv[2]))
    elif command == "token":
        print(
            "\n".join(tokens(Path(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5]) if len(sys.argv) > 5 else 1))
        )
    elif command == "order-sign":
        print(json.dumps(order_sign()))
    else:
        sys.exit(__doc__)
