# syntax=docker/dockerfile:1
# Apache Kafka Connect (the apache/kafka image's connect-distributed.sh) with the two sink plugins the connector
# files name. Stage 1 downloads and unpacks the plugins; stage 2 is the Kafka image with them on plugin.path.

FROM alpine:3.21 AS plugins
ARG MONGO_CONNECTOR_VERSION=1.13.1
ARG S3_CONNECTOR_VERSION=10.6.7
RUN apk add --no-cache curl unzip \
 && mkdir -p /plugins/mongo-kafka-connect \
 && curl -fsSL -o /plugins/mongo-kafka-connect/mongo-kafka-connect-${MONGO_CONNECTOR_VERSION}-all.jar \
      https://repo1.maven.org/maven2/org/mongodb/kafka/mongo-kafka-connect/${MONGO_CONNECTOR_VERSION}/mongo-kafka-connect-${MONGO_CONNECTOR_VERSION}-all.jar \
 && curl -fsSL -o /tmp/s3.zip \
      https://hub-downloads.confluent.io/api/plugins/confluentinc/kafka-connect-s3/versions/${S3_CONNECTOR_VERSION}/confluentinc-kafka-connect-s3-${S3_CONNECTOR_VERSION}.zip \
 && unzip -q /tmp/s3.zip -d /plugins \
 && rm /tmp/s3.zip

FROM apache/kafka:4.1.1 AS runtime
COPY --from=plugins /plugins /opt/kafka/plugins
COPY connect-distributed.properties /opt/kafka/config/edgesight-connect.properties
USER appuser
EXPOSE 8083
ENTRYPOINT ["/opt/kafka/bin/connect-distributed.sh"]
CMD ["/opt/kafka/config/edgesight-connect.properties"]
