"""Wire-protocol adapters over the one prediction core: payload parsing and response shaping.

``mlflow_scoring`` speaks MLflow's ``/invocations`` formats, ``v2`` the Open Inference Protocol.
Both turn their payloads into rows validated by ``rows.validate_records`` (the HR API's schema).
"""
