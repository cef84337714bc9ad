# One image for the API and the workers.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY orderflow ./orderflow
COPY domain ./domain
COPY db ./db
COPY services ./services
COPY activities ./activities
COPY workflows ./workflows
COPY api ./api
COPY workers ./workers
COPY bench ./bench
RUN pip install --no-cache-dir .
ENV ORDERFLOW_HOST=0.0.0.0
EXPOSE 8000 9464
CMD ["orderflow", "api"]
