from fastapi import FastAPI

app = FastAPI()


@app.get("/")
def root() -> dict[str, str]:
    return {"served_by": "fastapi"}


@app.post("/predict")
def predict(payload: dict[str, float]) -> dict[str, float]:
    return {"sum": sum(payload.values())}
