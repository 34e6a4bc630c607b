"""The practice's promotion step, run by CI once the gate suite has passed:

    python promote_model.py NAME [VERSION]

moves VERSION of NAME (default: the newest version in Staging) to Production and archives the
versions that were there. Nothing here checks that the gates ran, or that they judged this
version: the pipeline's order is the only guard.
"""
import sys

from mlflow.tracking import MlflowClient


def main(argv):
    if len(argv) not in (2, 3):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    name = argv[1]
    client = MlflowClient()
    if len(argv) == 3:
        number = argv[2]
    else:
        staging = [v for v in client.search_model_versions(f"name='{name}'") if v.current_stage == "Staging"]
        if not staging:
            print(f"{name} has no version in Staging", file=sys.stderr)
            return 1
        number = max(staging, key=lambda v: int(v.version)).version
    client.transition_model_version_stage(name, number, "Production", archive_existing_versions=True)
    print(f"promoted {name} version {number} to Production")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
