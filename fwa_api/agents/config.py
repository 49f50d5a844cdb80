"""The assistant's settings: which LLM server to talk to and how long to wait for it.

``FWA_LLM_*`` environment variables, on top of the shared ``Settings``: with ``FWA_LLM_URL`` and
``FWA_LLM_MODEL`` unset, the Ollama backend uses ``FWA_OLLAMA_URL`` and ``FWA_OLLAMA_MODEL``.

    FWA_LLM_BACKEND=openai FWA_LLM_URL=http://127.0.0.1:8080/v1 FWA_LLM_MODEL=qwen2.5 fwa serve
"""

from __future__ import annotations

from typing import Literal, Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from fwa_pipeline.settings import Settings


class AgentSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="FWA_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    # ollama: Ollama's native API; openai: any OpenAI-compatible server (llama.cpp, vLLM).
    llm_backend: Literal["ollama", "openai"] = "ollama"
    # Base URL: Ollama's root (http://host:11434) or the OpenAI-style root ending in /v1.
    llm_url: str = ""
    llm_model: str = ""
    llm_api_key: SecretStr = SecretStr("")
    # OpenAI-compatible servers cannot be asked whether a model calls tools: say so here
    # (vLLM with a tool parser: true; llama.cpp's Python server ignores ``tools``: false).
    llm_native_tools: bool = False
    # How an OpenAI-compatible server takes a JSON schema: ``json_schema`` (OpenAI, vLLM,
    # llama.cpp's server) or ``json_object`` with ``schema`` (llama-cpp-python).
    llm_json_mode: Literal["json_schema", "json_object"] = "json_schema"
    # Chat templates without a system role (Gemma's; llama-cpp-python's ``gemma`` format drops
    # the system message silently): send the system prompt at the start of the first user
    # message instead.
    llm_system_as_user: bool = False

    llm_connect_timeout_s: float = Field(3.0, gt=0)
    # Longest silence between two streamed chunks (a cold model load is the slow case).
    llm_read_timeout_s: float = Field(60.0, gt=0)
    # Longest one LLM call may take, first byte to last.
    llm_call_timeout_s: float = Field(120.0, gt=0)
    # /api/tags, /api/show, /v1/models; /api/ps may block while a model loads.
    llm_probe_timeout_s: float = Field(2.0, gt=0)
    # How long a model's capabilities (and an unreachable server) are remembered.
    llm_capabilities_ttl_s: float = Field(300.0, ge=0)
    llm_unreachable_ttl_s: float = Field(5.0, ge=0)
    llm_temperature: float = Field(0.2, ge=0)
    # Most tokens one call may generate: a model that never stops is cut off here, not at
    # the call's timeout.
    llm_max_tokens: int = Field(1024, ge=16, le=32768)

    agent_max_iterations: int = Field(5, ge=1, le=10)
    agent_history_messages: int = Field(20, ge=0, le=200)
    # Longest one turn may take, all its calls and tools together: then it answers with what
    # it has gathered and says it was cut short.
    agent_turn_timeout_s: float = Field(90.0, gt=0)
    # Estimated tokens a prompt may hold (history, tool results and all); with the answer's
    # ``llm_max_tokens`` it must fit the model's context window.
    agent_prompt_tokens: int = Field(6000, ge=1000)
    # How long a pipeline run the assistant proposed waits for the user's confirmation.
    agent_confirm_ttl_s: float = Field(600.0, gt=0)

    @model_validator(mode="after")
    def _openai_needs_a_server(self) -> Self:
        if self.llm_backend == "openai" and not (self.llm_url and self.llm_model):
            raise ValueError("FWA_LLM_BACKEND=openai needs FWA_LLM_URL and FWA_LLM_MODEL")
        return self

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: object) -> AgentSettings:
        agent = cls(**overrides)  # type: ignore[arg-type]
        if agent.llm_backend == "ollama":
            updates = {
                "llm_url": agent.llm_url or settings.ollama_url,
                "llm_model": agent.llm_model or settings.ollama_model,
            }
            agent = agent.model_copy(update=updates)
        return agent

    @property
    def base_url(self) -> str:
        return self.llm_url.rstrip("/")
