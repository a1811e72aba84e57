"""The bare endpoint: the services' server stack (uvicorn + FastAPI) with nothing behind it.

``uvicorn bench.hello:app`` with the same uvicorn options the bench uses for the services.
"""

from fastapi import FastAPI

app = FastAPI(title="bench hello")


@app.get("/hello")
async def hello() -> dict[str, str]:
    return {"status": "ok"}
